// Package test gathers knactor's tests that cross packages: end-to-end runs with real function
// processes and a real MinIO (miniotest), a fault-injecting proxy in front of it (faultproxy),
// helpers that build and run real processes (proctest), the function-contract conformance kit
// (conformance), and the chaos tests that kill, freeze and retry under load and count every
// call (chaos).
package test
