// Package test gathers knactor's tests that cross packages: end-to-end runs with real function
// processes and a real MinIO (miniotest), the function-contract conformance kit (conformance),
// and load and fault tests.
package test
