// Package switchyardtest runs real PostgreSQL streaming replication on the
// local machine, for tests: a primary and any number of streaming replicas,
// started in a fraction of a second from an initdb template cached per
// machine, with fsync off, in memory where /dev/shm allows.
//
// Start (or New, in a test) starts a Cluster; Main shares one among a
// package's tests. Each cluster has a system identifier of its own, shared
// by its replicas, so code that tells clusters apart can be tested with two
// (StartClusters and NewClusters start several side by side). Options set
// the number of replicas, replay delays, postgresql.conf settings for every
// node or for single nodes (NodeSettings), and the server encoding and
// locale.
//
// Faults, on a Node: lag (SetApplyDelay, PauseReplay), crashes (Kill,
// StopImmediate), restarts, promotion (Cluster.Promote), a hung server
// (Freeze, Thaw), settings changed at run time (SetSetting); and on the
// network, with a Relay in front of a node: latency, limited bandwidth, a
// partition that holds data (Blackhole), resets and refused connections.
//
// Without PostgreSQL's server binaries (see FindBinaries), New and
// NewClusters skip the test, and Main runs the tests that do not need a
// server while those that do skip themselves with Need; setting
// SWITCHYARD_REQUIRE_SERVER turns that into a failure, for CI.
package switchyardtest
