//! Flush batches run on the host's own instructions (npt's `Host`
//! executor): how the AArch64 and RISC-V hypervisors implement
//! `Hv::flush`, `Hv::flush_all` and `Hv::skip_flush`.

use crate::scenarios::Applied;
use core::fmt;
use npt::flush::flush_all;
use npt::instr::Host;
use npt::{FlushError, Format, TlbFlush};

/// The register that selects the live table (VTTBR_EL2, hgatp), and how
/// to read it: printed after each flush, which must leave it as it was.
pub struct TableRegister {
    pub name: &'static str,
    pub read: fn() -> u64,
}

/// A batch as the host ran it, or left out.
pub enum HostFlush {
    Ran {
        result: Result<(), FlushError>,
        reg: &'static str,
        value: u64,
    },
    Ignored,
}

impl HostFlush {
    fn ran(result: Result<(), FlushError>, reg: &TableRegister) -> Self {
        HostFlush::Ran {
            result,
            reg: reg.name,
            value: (reg.read)(),
        }
    }
}

/// `tf.flush()`.
pub fn flush<F: Format>(tf: TlbFlush<F>, reg: &TableRegister) -> HostFlush {
    HostFlush::ran(tf.flush().map_err(|u| u.error), reg)
}

/// `flush_all` on the host.
pub fn all<F: Format>(reg: &TableRegister) -> HostFlush {
    HostFlush::ran(flush_all::<F>(&mut Host), reg)
}

/// `tf.ignore()`: the negative control.
pub fn ignore<F: Format>(tf: TlbFlush<F>) -> HostFlush {
    tf.ignore();
    HostFlush::Ignored
}

impl Applied for HostFlush {
    fn observe(&mut self) {}

    fn ok(&self) -> bool {
        matches!(self, HostFlush::Ran { result: Ok(()), .. })
    }
}

impl fmt::Display for HostFlush {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HostFlush::Ran { result, reg, value } => {
                write!(f, "flush={result:?} ({reg} after={value:#x})")
            }
            HostFlush::Ignored => write!(f, "the invalidation suppressed (.ignore())"),
        }
    }
}
