//! Threads that PostgreSQL's signals can never reach.
//!
//! A backend (and the background worker) handles its signals — SIGHUP for a configuration
//! reload, SIGUSR1 for NOTIFY, sinval catch-up and recovery conflicts, SIGINT for cancel, SIGTERM
//! for shutdown — with handlers that touch the backend's own state and, in pgrx, refuse to run
//! anywhere but the main thread (they abort the process, and the postmaster then restarts the
//! whole cluster). The kernel may deliver a process-directed signal to any thread that does not
//! block it, so every thread memory_ext starts must block them all from its first instruction.
//!
//! Blocking inside the new thread would leave a window between its start and that call. Instead
//! the spawning thread blocks every signal, spawns (a new thread inherits its creator's mask), and
//! restores its own mask: the new thread never has a moment with a signal unblocked, and signals
//! that arrive meanwhile stay pending for the spawning thread, which takes them as soon as its
//! mask is restored. Threads that the new thread starts in turn (ureq's DNS resolver) inherit the
//! full mask too.

use std::io;
use std::thread::{Builder, JoinHandle};

/// Spawns `f` on a new thread whose signal mask blocks every signal, with no window in which any
/// signal is deliverable to it. The calling thread's mask is the same before and after.
pub fn spawn_without_signals<F, T>(name: &str, f: F) -> io::Result<JoinHandle<T>>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    // SAFETY: sigfillset/pthread_sigmask on stack-allocated sets; the previous mask is restored
    // on every path before returning.
    unsafe {
        let mut all: libc::sigset_t = std::mem::zeroed();
        let mut previous: libc::sigset_t = std::mem::zeroed();
        libc::sigfillset(&mut all);
        let rc = libc::pthread_sigmask(libc::SIG_SETMASK, &all, &mut previous);
        if rc != 0 {
            return Err(io::Error::from_raw_os_error(rc));
        }
        let spawned = Builder::new().name(name.to_owned()).spawn(f);
        libc::pthread_sigmask(libc::SIG_SETMASK, &previous, std::ptr::null_mut());
        spawned
    }
}

/// The signals blocked on the calling thread.
pub fn blocked_signals() -> Vec<i32> {
    // SAFETY: reading the calling thread's mask into a stack-allocated set.
    unsafe {
        let mut current: libc::sigset_t = std::mem::zeroed();
        libc::pthread_sigmask(libc::SIG_BLOCK, std::ptr::null(), &mut current);
        (1..libc::SIGRTMAX()).filter(|&s| libc::sigismember(&current, s) == 1).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BACKEND_SIGNALS: [i32; 7] =
        [libc::SIGHUP, libc::SIGINT, libc::SIGTERM, libc::SIGQUIT, libc::SIGUSR1, libc::SIGUSR2, libc::SIGALRM];

    #[test]
    fn the_new_thread_blocks_every_signal_and_the_spawner_keeps_its_mask() {
        let before = blocked_signals();
        let in_thread = spawn_without_signals("test", blocked_signals).unwrap().join().unwrap();
        for s in BACKEND_SIGNALS {
            assert!(in_thread.contains(&s), "signal {s} is not blocked in the new thread: {in_thread:?}");
        }
        assert_eq!(blocked_signals(), before, "the spawning thread's mask changed");
    }

    #[test]
    fn threads_started_by_the_new_thread_inherit_the_full_mask() {
        let grandchild = spawn_without_signals("test", || std::thread::spawn(blocked_signals).join().unwrap())
            .unwrap()
            .join()
            .unwrap();
        for s in BACKEND_SIGNALS {
            assert!(grandchild.contains(&s), "signal {s} is not blocked in a thread's own thread");
        }
    }

    #[test]
    fn a_signal_that_arrives_during_the_spawn_waits_for_the_spawning_thread() {
        // SIGUSR2 raised at this thread while the spawn is in progress (from inside the new
        // thread, which runs while the spawner may still have everything blocked) must not be
        // lost: it is delivered to this thread once its mask is restored.
        use std::sync::atomic::{AtomicBool, Ordering};
        static GOT: AtomicBool = AtomicBool::new(false);
        extern "C" fn on_usr2(_: libc::c_int) {
            GOT.store(true, Ordering::SeqCst);
        }
        // SAFETY: installing a handler that only stores an atomic; pthread_self is plain.
        unsafe {
            libc::signal(libc::SIGUSR2, on_usr2 as *const () as libc::sighandler_t);
            let me = libc::pthread_self() as usize;
            spawn_without_signals("test", move || libc::pthread_kill(me as libc::pthread_t, libc::SIGUSR2))
                .unwrap()
                .join()
                .unwrap();
            libc::signal(libc::SIGUSR2, libc::SIG_DFL);
        }
        assert!(GOT.load(Ordering::SeqCst), "the signal was lost");
    }
}
