// Code in the shape sqlc generates (see db.go).

package sqlcdb

import (
	"database/sql"
)

// Author is a row of authors.
type Author struct {
	ID   int64
	Name string
	Bio  sql.NullString
}
