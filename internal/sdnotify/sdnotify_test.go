package sdnotify

import (
	"net"
	"path/filepath"
	"testing"
)

func TestSend(t *testing.T) {
	t.Setenv("NOTIFY_SOCKET", "")
	if err := FromEnv().Send("READY=1"); err != nil {
		t.Fatalf("without NOTIFY_SOCKET Send must do nothing: %v", err)
	}
	for _, name := range []string{filepath.Join(t.TempDir(), "notify"), "@peerd-sdnotify-test"} {
		listen := name
		if name[0] == '@' {
			listen = "\x00" + name[1:]
		}
		pc, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: listen, Net: "unixgram"})
		if err != nil {
			t.Fatal(err)
		}
		t.Setenv("NOTIFY_SOCKET", name)
		if err := FromEnv().Send("MAINPID=42\nREADY=1"); err != nil {
			t.Fatalf("Send to %s: %v", name, err)
		}
		buf := make([]byte, 64)
		n, err := pc.Read(buf)
		if err != nil {
			t.Fatal(err)
		}
		if got := string(buf[:n]); got != "MAINPID=42\nREADY=1" {
			t.Errorf("%s received %q", name, got)
		}
		pc.Close()
	}
	t.Setenv("NOTIFY_SOCKET", filepath.Join(t.TempDir(), "nobody"))
	if err := FromEnv().Send("READY=1"); err == nil {
		t.Error("Send to a socket nobody listens on: no error")
	}
}
