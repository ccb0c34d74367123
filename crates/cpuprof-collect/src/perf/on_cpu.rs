//! Which task each CPU runs, from the switch records of its ring.
//!
//! The last switch-out of an exiting thread names no task: it has let go of its ids, and the
//! kernel writes pid and tid -1. It is the switch-out of the task that last switched in on
//! that CPU, whose ring it is in (records of one ring are in order). Naming it makes each
//! thread's on-CPU intervals complete, so that they add up to its CPU exactly: what the exit
//! accounting falls back to when taskstats is refused (`cpuprof_model::ExitAccounting`).

use cpuprof_model::{Pid, Tid};

use super::records::Record;

/// Per ring: the task that last switched in.
#[derive(Debug, Default)]
pub struct OnCpu {
    tasks: Vec<Option<(Pid, Tid)>>,
}

impl OnCpu {
    /// `r` as read from ring `ring`, with a nameless switch-out given its task.
    pub fn resolve<'r>(&mut self, ring: usize, r: Record<'r>) -> Record<'r> {
        let Record::Switch {
            pid,
            tid,
            time,
            out,
            preempted,
        } = r
        else {
            return r;
        };
        if self.tasks.len() <= ring {
            self.tasks.resize(ring + 1, None);
        }
        if !out {
            let named = pid != 0 && pid != u32::MAX && tid != u32::MAX;
            self.tasks[ring] = named.then_some((pid, tid));
            return r;
        }
        match self.tasks[ring].take() {
            Some((on_pid, on_tid)) if tid == u32::MAX || pid == u32::MAX => Record::Switch {
                pid: on_pid,
                tid: on_tid,
                time,
                out,
                preempted,
            },
            _ => r,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn switch(pid: u32, tid: u32, time: u64, out: bool) -> Record<'static> {
        Record::Switch {
            pid,
            tid,
            time,
            out,
            preempted: false,
        }
    }

    fn task(r: Record<'_>) -> (u32, u32) {
        match r {
            Record::Switch { pid, tid, .. } => (pid, tid),
            _ => panic!("not a switch"),
        }
    }

    #[test]
    fn a_nameless_last_switch_out_belongs_to_the_task_on_that_cpu() {
        let mut on = OnCpu::default();
        let none = u32::MAX;
        // CPU 0 runs 10/11, CPU 1 runs 20/21; 11 exits on CPU 0.
        assert_eq!(task(on.resolve(0, switch(10, 11, 1, false))), (10, 11));
        assert_eq!(task(on.resolve(1, switch(20, 21, 2, false))), (20, 21));
        assert_eq!(task(on.resolve(0, switch(none, none, 3, true))), (10, 11));
        // Named switch-outs stay as they are; a nameless one with nothing switched in is
        // left nameless (the sampler drops it).
        assert_eq!(task(on.resolve(1, switch(20, 21, 4, true))), (20, 21));
        assert_eq!(
            task(on.resolve(1, switch(none, none, 5, true))),
            (none, none)
        );
        assert_eq!(
            task(on.resolve(0, switch(none, none, 6, true))),
            (none, none)
        );
        // Other records pass through.
        assert!(matches!(on.resolve(3, Record::Lost(2)), Record::Lost(2)));
    }
}
