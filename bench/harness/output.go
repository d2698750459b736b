package harness

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// WriteFiles writes the report as JSON to jsonPath and, with chart, the PNG
// chart next to it (same name, .png). It returns the chart's path ("" when
// none was written). The directory is created if needed.
func (r *Report) WriteFiles(jsonPath string, chart bool) (string, error) {
	if err := os.MkdirAll(filepath.Dir(jsonPath), 0o755); err != nil {
		return "", fmt.Errorf("results directory: %w", err)
	}
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return "", fmt.Errorf("encode the report: %w", err)
	}
	if err := os.WriteFile(jsonPath, append(b, '\n'), 0o644); err != nil {
		return "", fmt.Errorf("write the report: %w", err)
	}
	if !chart {
		return "", nil
	}
	pngPath := strings.TrimSuffix(jsonPath, filepath.Ext(jsonPath)) + ".png"
	var buf bytes.Buffer
	if err := r.WriteChart(&buf); err != nil {
		return "", err
	}
	if err := os.WriteFile(pngPath, buf.Bytes(), 0o644); err != nil {
		return "", fmt.Errorf("write the chart: %w", err)
	}
	return pngPath, nil
}
