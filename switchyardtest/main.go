package switchyardtest

import (
	"context"
	"fmt"
	"os"
	"time"
)

// Main is a TestMain for a package whose tests share one cluster: it starts
// the cluster, runs setup on it (tables, data; may be nil), stores it in
// *shared, runs the tests, closes the cluster and exits with the tests'
// status. If the cluster cannot start or setup fails, it says why and exits
// with status 1.
//
//	var lab *switchyardtest.Cluster
//
//	func TestMain(m *testing.M) {
//		switchyardtest.Main(m, switchyardtest.Options{Replicas: 2}, &lab, nil)
//	}
func Main(m interface{ Run() int }, opts Options, shared **Cluster, setup func(context.Context, *Cluster) error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	c, err := Start(ctx, opts)
	if err == nil && setup != nil {
		if err = setup(ctx, c); err != nil {
			c.Close()
		}
	}
	cancel()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	*shared = c
	code := m.Run()
	c.Close()
	os.Exit(code)
}
