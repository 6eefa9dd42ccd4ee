//go:build !linux

package vmtests

import "syscall"

// qemuProcAttr starts QEMU in its own process group (killed as a whole
// when the run times out). Without Linux's Pdeathsig, a harness that is
// itself killed leaves QEMU running until the guest powers off.
func qemuProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true}
}
