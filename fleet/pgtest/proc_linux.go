package pgtest

import "syscall"

// sysProcAttr runs a server process as cred (nil: as this process's user)
// and has the kernel kill it if this process dies first, as when a test
// binary times out and exits without running its cleanups.
func sysProcAttr(cred *syscall.Credential) *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Credential: cred, Pdeathsig: syscall.SIGKILL}
}
