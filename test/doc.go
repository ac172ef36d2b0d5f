// Package test gathers knactor's tests that cross packages: end-to-end runs with real function
// processes and a real MinIO (miniotest), helpers that build and run real processes
// (proctest), the function-contract conformance kit (conformance),
// and load and fault tests.
package test
