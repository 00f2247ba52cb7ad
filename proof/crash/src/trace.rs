//! Running a process under ptrace, counting its state-changing syscalls, and
//! killing it at the k-th one.
//!
//! The count is over the whole process tree (every thread, and children such
//! as `qemu-img`), in the order the kernel stops them, so "the k-th point" is
//! one moment of the run. strace's `inject=…:signal=KILL:when=K` counts per
//! syscall and per thread, which leaves moments of multi-threaded tools out.
//!
//! Only the syscalls in [`POINTS`] stop the process: a seccomp filter,
//! installed in the child before `exec`, sends them to the tracer
//! (`SECCOMP_RET_TRACE`) and lets everything else run at full speed. At the
//! k-th stop the tracer kills the process group with SIGKILL while the
//! syscall has not run yet: the crash happens just before that write,
//! rename, link, unlink, sync or truncate, with everything before it in the
//! page cache.

use std::collections::BTreeMap;
use std::io;
use std::os::unix::process::CommandExt;
use std::process::{Command, ExitStatus};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// The syscalls that change state: data, names, durability, sizes, and the
/// sends that carry a push to a server.
pub const POINTS: &[(&str, libc::c_long)] = &[
    ("write", libc::SYS_write),
    ("pwrite64", libc::SYS_pwrite64),
    ("writev", libc::SYS_writev),
    ("pwritev", libc::SYS_pwritev),
    ("pwritev2", libc::SYS_pwritev2),
    ("sendto", libc::SYS_sendto),
    ("sendmsg", libc::SYS_sendmsg),
    ("copy_file_range", libc::SYS_copy_file_range),
    ("rename", libc::SYS_rename),
    ("renameat", libc::SYS_renameat),
    ("renameat2", libc::SYS_renameat2),
    ("link", libc::SYS_link),
    ("linkat", libc::SYS_linkat),
    ("symlink", libc::SYS_symlink),
    ("symlinkat", libc::SYS_symlinkat),
    ("mkdir", libc::SYS_mkdir),
    ("mkdirat", libc::SYS_mkdirat),
    ("unlink", libc::SYS_unlink),
    ("unlinkat", libc::SYS_unlinkat),
    ("rmdir", libc::SYS_rmdir),
    ("fsync", libc::SYS_fsync),
    ("fdatasync", libc::SYS_fdatasync),
    ("syncfs", libc::SYS_syncfs),
    ("sync", libc::SYS_sync),
    ("ftruncate", libc::SYS_ftruncate),
    ("truncate", libc::SYS_truncate),
    ("fallocate", libc::SYS_fallocate),
];

/// How a traced run ended.
#[derive(Debug)]
pub struct Traced {
    /// The main process's exit, or `None` when the tracer killed it.
    pub status: Option<ExitStatus>,
    /// State-changing syscalls the run reached (the last one not run when killed).
    pub points: u64,
    /// Of those, how many of each syscall.
    pub by_syscall: BTreeMap<&'static str, u64>,
    /// The syscall of the last point (the one killed at).
    pub last: Option<&'static str>,
    /// Points an observer made fail.
    pub failed: u64,
}

const AUDIT_ARCH_X86_64: u32 = 0xC000_003E;

/// The seccomp program: trace the [`POINTS`] (with their index as data), allow the rest.
fn filter() -> Vec<libc::sock_filter> {
    let stmt = |code: u32, k: u32| libc::sock_filter {
        code: code as u16,
        jt: 0,
        jf: 0,
        k,
    };
    let jump = |k: u32, jt: u8, jf: u8| libc::sock_filter {
        code: (libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K) as u16,
        jt,
        jf,
        k,
    };
    let load = libc::BPF_LD | libc::BPF_W | libc::BPF_ABS;
    let ret = libc::BPF_RET | libc::BPF_K;
    let n = POINTS.len() as u8;
    let mut f = vec![
        stmt(load, 4), // seccomp_data.arch
        jump(AUDIT_ARCH_X86_64, 1, 0),
        stmt(ret, libc::SECCOMP_RET_ALLOW),
        stmt(load, 0), // seccomp_data.nr
    ];
    for (i, &(_, nr)) in POINTS.iter().enumerate() {
        // Equal: jump to this syscall's return, past the other tests and the allow.
        let to_ret = (n - i as u8 - 1) + 1 + i as u8;
        f.push(jump(nr as u32, to_ret, 0));
    }
    f.push(stmt(ret, libc::SECCOMP_RET_ALLOW));
    for i in 0..POINTS.len() {
        f.push(stmt(ret, libc::SECCOMP_RET_TRACE | i as u32));
    }
    f
}

fn check(r: libc::c_long, what: &str) -> io::Result<()> {
    if r < 0 {
        let e = io::Error::last_os_error();
        return Err(io::Error::new(e.kind(), format!("{what}: {e}")));
    }
    Ok(())
}

/// A point the run is about to pass (its syscall runs once the observer returns).
pub struct Stop {
    pub pid: libc::pid_t,
    pub syscall: &'static str,
    /// The syscall's six arguments (rdi, rsi, rdx, r10, r8, r9).
    pub args: [u64; 6],
}

/// Runs `cmd` under the tracer; with `kill_at`, kills it at that point. A
/// run longer than `timeout` is killed (and reads as killed).
pub fn run(cmd: &mut Command, kill_at: Option<u64>, timeout: Duration) -> io::Result<Traced> {
    run_observed(cmd, kill_at, timeout, &mut |_| None)
}

/// The registers of a tracee stopped at a syscall's entry.
fn regs_of(pid: libc::pid_t) -> libc::user_regs_struct {
    // SAFETY: GETREGS fills a user_regs_struct of our own; a tracee gone
    // already leaves it zeroed.
    let mut regs: libc::user_regs_struct = unsafe { std::mem::zeroed() };
    unsafe { libc::ptrace(libc::PTRACE_GETREGS, pid, 0, &mut regs) };
    regs
}

/// Makes the syscall a tracee is stopped at (with `regs`) fail with `errno` instead of running.
fn fail_syscall(pid: libc::pid_t, mut regs: libc::user_regs_struct, errno: i32) {
    // SAFETY: a plain ptrace request on a tracee stopped at a seccomp stop;
    // a syscall number of -1 skips the call, and rax is what it returns.
    regs.orig_rax = u64::MAX;
    regs.rax = (-(errno as i64)) as u64;
    unsafe { libc::ptrace(libc::PTRACE_SETREGS, pid, 0, &regs) };
}

/// What an observer wants of a point's syscall: `None` lets it run,
/// `Some(errno)` makes it fail with that error without running.
pub type Verdict = Option<i32>;

/// [`run`], calling `observe` at every point the run passes, before its
/// syscall runs (never at the point killed at). The tracee is stopped
/// while `observe` runs, so it sees the files as the syscall will find them.
pub fn run_observed(
    cmd: &mut Command,
    kill_at: Option<u64>,
    timeout: Duration,
    observe: &mut dyn FnMut(&Stop) -> Verdict,
) -> io::Result<Traced> {
    let prog = filter();
    // SAFETY: the closure runs between fork and exec and only makes
    // async-signal-safe calls (setpgid, ptrace, prctl) on memory prepared
    // before the fork.
    unsafe {
        cmd.pre_exec(move || {
            check(libc::setpgid(0, 0) as _, "setpgid")?;
            check(
                libc::ptrace(libc::PTRACE_TRACEME, 0, 0, 0),
                "ptrace(TRACEME)",
            )?;
            check(
                libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) as _,
                "no_new_privs",
            )?;
            let fprog = libc::sock_fprog {
                len: prog.len() as u16,
                filter: prog.as_ptr() as *mut _,
            };
            check(
                libc::prctl(
                    libc::PR_SET_SECCOMP,
                    libc::SECCOMP_MODE_FILTER,
                    &fprog as *const libc::sock_fprog,
                ) as _,
                "seccomp",
            )
        });
    }
    let child = cmd.spawn()?;
    let main = child.id() as libc::pid_t;
    // The child is stopped by the SIGTRAP that ends its exec.
    let mut status = 0;
    check(
        unsafe { libc::waitpid(main, &mut status, libc::__WALL) } as _,
        "waitpid",
    )?;
    let options = libc::PTRACE_O_TRACESECCOMP
        | libc::PTRACE_O_TRACECLONE
        | libc::PTRACE_O_TRACEFORK
        | libc::PTRACE_O_TRACEVFORK
        // An exec of a traced child stops at an event, not with a SIGTRAP
        // that would be passed on and kill it.
        | libc::PTRACE_O_TRACEEXEC
        | libc::PTRACE_O_EXITKILL;
    // SAFETY: plain ptrace requests on our own stopped child.
    unsafe {
        check(
            libc::ptrace(libc::PTRACE_SETOPTIONS, main, 0, options as libc::c_long),
            "ptrace(SETOPTIONS)",
        )?;
        check(libc::ptrace(libc::PTRACE_CONT, main, 0, 0), "ptrace(CONT)")?;
    }
    let done = Arc::new(AtomicBool::new(false));
    let watchdog = {
        let done = done.clone();
        std::thread::spawn(move || {
            let start = Instant::now();
            while !done.load(Ordering::Relaxed) {
                if start.elapsed() > timeout {
                    unsafe { libc::kill(-main, libc::SIGKILL) };
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        })
    };
    let mut traced = Traced {
        status: None,
        points: 0,
        by_syscall: BTreeMap::new(),
        last: None,
        failed: 0,
    };
    let mut killed = false;
    let mut known = std::collections::HashSet::from([main]);
    loop {
        let mut status = 0;
        // Only this run's process group: other threads may trace runs of their own.
        let pid = unsafe { libc::waitpid(-main, &mut status, libc::__WALL) };
        if pid < 0 {
            let e = io::Error::last_os_error();
            if e.raw_os_error() == Some(libc::ECHILD) {
                break;
            }
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        if libc::WIFEXITED(status) || libc::WIFSIGNALED(status) {
            if pid == main && !killed {
                traced.status = Some(std::os::unix::process::ExitStatusExt::from_raw(status));
            }
            continue;
        }
        if !libc::WIFSTOPPED(status) {
            continue;
        }
        let sig = libc::WSTOPSIG(status);
        let event = (status >> 16) & 0xff;
        let resume = if sig == libc::SIGTRAP && event == libc::PTRACE_EVENT_SECCOMP {
            let mut which: libc::c_ulong = 0;
            unsafe { libc::ptrace(libc::PTRACE_GETEVENTMSG, pid, 0, &mut which) };
            traced.points += 1;
            let name = POINTS.get(which as usize).map_or("?", |p| p.0);
            *traced.by_syscall.entry(name).or_default() += 1;
            traced.last = Some(name);
            if Some(traced.points) == kill_at {
                killed = true;
                unsafe { libc::kill(-main, libc::SIGKILL) };
                continue;
            }
            if let Some(&(syscall, _)) = POINTS.get(which as usize) {
                let regs = regs_of(pid);
                let stop = Stop {
                    pid,
                    syscall,
                    args: [regs.rdi, regs.rsi, regs.rdx, regs.r10, regs.r8, regs.r9],
                };
                if let Some(errno) = observe(&stop) {
                    fail_syscall(pid, regs, errno);
                    traced.failed += 1;
                }
            }
            0
        } else if sig == libc::SIGTRAP && event != 0 {
            // A clone, fork, vfork or exec: the new tracee reports its own stop.
            0
        } else if sig == libc::SIGSTOP && known.insert(pid) {
            // The first stop of a new tracee.
            0
        } else {
            sig
        };
        // A tracee may be gone already (killed with its group).
        unsafe { libc::ptrace(libc::PTRACE_CONT, pid, 0, resume as libc::c_long) };
    }
    done.store(true, Ordering::Relaxed);
    let _ = watchdog.join();
    // The Child handle was reaped by our waitpid loop; forget it.
    drop(child);
    Ok(traced)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A shell that writes three files counts their writes, and a kill at
    /// the second leaves only the first.
    #[test]
    fn counts_and_kills_at_a_point() {
        let dir = tempfile::tempdir().unwrap();
        let script = "echo a > a; echo b > b; echo c > c";
        let run_with = |k| {
            run(
                Command::new("sh")
                    .args(["-c", script])
                    .current_dir(dir.path()),
                k,
                Duration::from_secs(20),
            )
            .unwrap()
        };
        let whole = run_with(None);
        assert!(whole.status.unwrap().success());
        assert_eq!(whole.by_syscall.get("write"), Some(&3), "{whole:?}");
        for f in ["a", "b", "c"] {
            std::fs::remove_file(dir.path().join(f)).unwrap();
        }
        let cut = run_with(Some(2));
        assert!(cut.status.is_none());
        assert_eq!(cut.points, 2);
        assert!(dir.path().join("a").exists());
        assert_eq!(std::fs::read(dir.path().join("b")).unwrap(), b"");
        assert!(!dir.path().join("c").exists());
    }

    /// Threads and children are counted too, and a child that execs lives on.
    #[test]
    fn counts_children() {
        let dir = tempfile::tempdir().unwrap();
        let t = run(
            Command::new("sh")
                .args([
                    "-c",
                    "(echo x > x) & wait; sh -c 'echo y > y'; /bin/echo z > z",
                ])
                .current_dir(dir.path()),
            None,
            Duration::from_secs(20),
        )
        .unwrap();
        assert!(t.status.unwrap().success(), "{t:?}");
        assert_eq!(t.by_syscall.get("write"), Some(&3), "{t:?}");
        assert_eq!(std::fs::read(dir.path().join("z")).unwrap(), b"z\n");
    }
}
