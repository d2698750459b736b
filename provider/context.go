package provider

import "context"

type metadataKey struct{}

// Metadata returns the metadata the caller sent with the request handled
// under ctx, or nil. The map must not be modified.
func Metadata(ctx context.Context) map[string]string {
	md, _ := ctx.Value(metadataKey{}).(map[string]string)
	return md
}

func withMetadata(ctx context.Context, md map[string]string) context.Context {
	if len(md) == 0 {
		return ctx
	}
	return context.WithValue(ctx, metadataKey{}, md)
}
