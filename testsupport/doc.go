// Package testsupport gives tests real infrastructure instead of mocks: a
// throwaway PostgreSQL cluster (StartPostgres, SharedPostgres) and a driver
// that runs the connector binary the way the Flow runtime does (Connector,
// Session), checking protocol conformance as it reads.
//
// The driver deliberately uses its own minimal JSON structures rather than the
// repository's protocol package, so that it is an independent check of what
// the connector writes.
package testsupport
