package kubetest_test

import (
	"net"
	"os"
	"testing"

	"github.com/knactor/knactor/test/kubetest"
)

// TestNetNS checks the namespace ReexecInNetNS put the test binary in: only loopback, up, and
// any 127.x.y.z address bindable (kwok's pod IPs).
func TestNetNS(t *testing.T) {
	if !kubetest.InNetNS() {
		t.Skip("not in the private network namespace (-short or KNACTOR_NETNS=host)")
	}
	ifaces, err := net.Interfaces()
	if err != nil {
		t.Fatal(err)
	}
	if len(ifaces) != 1 || ifaces[0].Name != "lo" || ifaces[0].Flags&net.FlagUp == 0 {
		t.Fatalf("interfaces = %+v, want only lo, up", ifaces)
	}
	l, err := net.Listen("tcp", "127.1.2.3:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	conn, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	conn.Close()
	if _, err := net.Dial("tcp", "1.1.1.1:443"); err == nil {
		t.Fatal("reached 1.1.1.1 from inside the namespace")
	}
	t.Logf("pid %d in a namespace with only lo", os.Getpid())
}
