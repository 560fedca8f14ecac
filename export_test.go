package switchyard

import "context"

// QueryCacheUsage returns the entries and bytes ctx's query cache holds,
// for tests.
func QueryCacheUsage(ctx context.Context) (entries, bytes int) {
	if qc := cacheFrom(ctx); qc != nil {
		return qc.usage()
	}
	return 0, 0
}
