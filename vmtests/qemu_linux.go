package vmtests

import "syscall"

// qemuProcAttr starts QEMU in its own process group (killed as a whole
// when the run times out) that dies with the harness (Pdeathsig).
func qemuProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
}
