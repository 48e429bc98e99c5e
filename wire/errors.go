// Package wire holds the JSON types of the HTTP contract (SPEC sections 1 and
// 1.9): field names, order, omission rules and required-field checks. The
// store persists these same shapes, so the db holds what the API speaks.
package wire

import "fmt"

// MissingFieldError reports a required JSON member that was absent or null.
// The API answers it with 422, like any other type error.
type MissingFieldError struct{ Field string }

func (e *MissingFieldError) Error() string { return fmt.Sprintf("missing field `%s`", e.Field) }

// InvalidValueError reports a value of the right JSON type but outside its
// enumeration (a TaskKind, say). Also a 422.
type InvalidValueError struct{ Field, Value string }

func (e *InvalidValueError) Error() string {
	return fmt.Sprintf("invalid value %q for `%s`", e.Value, e.Field)
}

func missing(field string) error { return &MissingFieldError{Field: field} }
