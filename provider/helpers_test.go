package provider

import "reflect"

func reflectNew(m *method) reflect.Value { return reflect.New(m.reply) }
