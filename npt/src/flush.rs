//! TLB invalidation: recipes as data, batches collected per operation, and
//! executors that either run the instructions or record them.
//!
//! A spec states, per scope (one guest-physical page, this guest's whole
//! context, everything), the instruction sequence: steps run once `before`,
//! once per invalidated leaf (`each`), and once `after`. Table operations
//! return a [`TlbFlush`] batch naming the leaves they changed; the caller
//! runs it with [`TlbFlush::flush`] on the format's own host, or hands it an
//! executor of its own (the [`Recorder`] in tests).

use crate::error::FlushError;
use crate::format::Format;
use crate::frames::{FrameList, FrameOps};
use core::marker::PhantomData;

/// An instruction wrapper the runtime knows how to execute.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Instr {
    /// `DSB ISHST` (Arm ARM C6.2, DSB).
    DsbIshst,
    /// `DSB ISH`.
    DsbIsh,
    /// `ISB`.
    Isb,
    /// `TLBI IPAS2E1IS, Xt`: stage-2 entries for one IPA, current VMID,
    /// Inner Shareable.
    TlbiIpas2e1is,
    /// `TLBI VMALLE1IS`: stage-1 entries of the current VMID.
    TlbiVmalle1is,
    /// `TLBI VMALLS12E1IS`: stage-1 and stage-2 entries of the current VMID.
    TlbiVmalls12e1is,
    /// `TLBI ALLE1IS`: all EL1&0 entries of all VMIDs.
    TlbiAlle1is,
    /// `INVEPT` type 1, single-context, with the EPTP as descriptor (falls
    /// back to all-context where single-context is not supported).
    InveptSingleContext,
    /// `INVEPT` type 2, all-context.
    InveptAllContext,
    /// AMD SVM: flush the TLB entries of the ASID in the operand at the next
    /// VMRUN (VMCB.TLB_CONTROL = 3). Not an instruction: the hypervisor
    /// applies it to its VMCB, see [`crate::instr::SvmTlbControl`].
    SvmFlushAsid,
    /// AMD SVM: flush the whole TLB at the next VMRUN (TLB_CONTROL = 1).
    SvmFlushAll,
    /// `HFENCE.GVMA rs1, rs2` (RISC-V privileged spec, hypervisor extension):
    /// `rs1` = guest-physical address >> 2 or x0, `rs2` = VMID or x0.
    HfenceGvma,
}

/// An operand in a recipe step.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Operand {
    /// The zero register: "all" for the instructions that take it so.
    Zero,
    /// The invalidated guest-physical address shifted right by this much.
    Gpa(u32),
    /// A context value by slot (see [`Context`]).
    Slot(u8),
}

/// One instruction of a recipe.
#[derive(Clone, Copy, Debug)]
pub struct Step {
    /// The instruction.
    pub instr: Instr,
    /// Its operands.
    pub operands: &'static [Operand],
}

/// A register that must hold this table's value while a recipe runs
/// (Arm TLBIs act on the VMID in VTTBR_EL2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ContextRegister {
    /// VTTBR_EL2.
    VttbrEl2,
    /// HCR_EL2.TGE (bit 27), read and written as 0 or 1. On a VHE host
    /// (HCR_EL2.E2H = 1) running with TGE = 1, EL1 TLB maintenance such as
    /// `TLBI VMALLE1IS` targets the EL2&0 regime instead of the guest's
    /// EL1&0 (Arm ARM D8.16, "TLB maintenance instructions": the regime an
    /// EL1 operation applies to when {E2H, TGE} = {1, 1}); recipes clear it
    /// while they run, as Linux KVM's `__tlb_switch_to_guest` does. On a
    /// VHE host, run such a flush with interrupts masked, as KVM does:
    /// while TGE is 0 the host is not in its own regime.
    HcrEl2Tge,
}

/// The instruction sequence for one scope.
#[derive(Clone, Copy, Debug)]
pub struct Recipe {
    /// The register to make current, and the context slot holding its value.
    pub current: Option<(ContextRegister, u8)>,
    /// Register bits that must read 0 while the recipe runs (after
    /// `current` is switched; restored before it).
    pub clear: &'static [ContextRegister],
    /// Run once first.
    pub before: &'static [Step],
    /// Run once per invalidated leaf.
    pub each: &'static [Step],
    /// Run once last.
    pub after: &'static [Step],
}

/// A format's recipes.
#[derive(Clone, Copy, Debug)]
pub struct FlushSpec {
    /// Whether making an invalid entry valid needs an invalidation (RISC-V
    /// may cache invalid entries; x86 and Arm do not).
    pub invalidate_on_map: bool,
    /// Whether the per-page recipe also invalidates cached table
    /// (non-leaf) entries for the address, so an unlinked table is
    /// invalidated by its base address (Arm TLBI IPAS2E1IS, all levels);
    /// otherwise unlinking a table invalidates the context (RISC-V
    /// HFENCE.GVMA with rs1 != x0 covers leaf entries only).
    pub page_covers_tables: bool,
    /// Pages a batch invalidates one by one before it invalidates the whole
    /// context instead.
    pub page_limit: usize,
    /// Whether replacing a block by a table of smaller leaves needs
    /// break-before-make: invalid entry, invalidation, then the table.
    pub split_break_before_make: bool,
    /// Whether a permission fault drops the faulting CPU's cached
    /// translation for the address by itself (EPT: an EPT violation
    /// invalidates the mappings used to translate its GPA), so the fault
    /// handler's relaxing of the entry needs no invalidation. Where this
    /// is false the handler's batch invalidates the page.
    pub fault_invalidates: bool,
    /// One guest-physical page.
    pub page: Recipe,
    /// Everything of this table's context (EPTP, VMID).
    pub context: Recipe,
    /// Everything.
    pub all: Recipe,
}

const STUB_RECIPE: Recipe = Recipe {
    current: None,
    clear: &[],
    before: &[],
    each: &[],
    after: &[],
};

/// The recipes the spec compiler's fallback gives a format whose spec has
/// errors (the crate does not compile, so they are never used).
#[doc(hidden)]
pub const STUB_FLUSH: FlushSpec = FlushSpec {
    invalidate_on_map: false,
    page_covers_tables: false,
    page_limit: 1,
    split_break_before_make: true,
    fault_invalidates: false,
    page: STUB_RECIPE,
    context: STUB_RECIPE,
    all: STUB_RECIPE,
};

/// Values recipes refer to by name, computed once per table: slot 0 is the
/// root register, the others are named in the spec.
pub type Context = [u64; 4];

/// An operand resolved to a value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Arg {
    /// The zero register.
    Zero,
    /// A register holding this value.
    Value(u64),
}

/// One instruction as an executor receives it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Issued {
    /// The instruction.
    pub instr: Instr,
    /// Its operands (unused ones are `Zero`).
    pub args: [Arg; 2],
}

/// Something that carries out invalidations: the host's instructions
/// ([`crate::instr::Host`]) or a recorder.
pub trait FlushExecutor {
    /// Executes one instruction.
    fn execute(&mut self, op: Issued) -> Result<(), FlushError>;
    /// Makes `reg` hold `value`; returns the old value if it changed.
    fn switch_context(
        &mut self,
        reg: ContextRegister,
        value: u64,
    ) -> Result<Option<u64>, FlushError>;
    /// Puts back the value `switch_context` returned.
    fn restore_context(&mut self, reg: ContextRegister, old: u64) -> Result<(), FlushError>;
    /// Called once a batch's recipe has run here, before the batch frees
    /// the tables it unlinked. INVEPT, HFENCE.GVMA and SVM's TLB_CONTROL
    /// act on one CPU (or VMCB) only: a hypervisor whose vCPUs of this
    /// table may run on other CPUs returns from here only once each of
    /// those CPUs has run the same instructions (by IPI, or SBI remote
    /// HFENCE.GVMA), and returns an error if one could not; the tables are
    /// then kept (see [`Unflushed`]). Arm's `...IS` TLBIs are broadcast
    /// to the Inner Shareable domain and need nothing here.
    fn complete(&mut self) -> Result<(), FlushError> {
        Ok(())
    }
}

/// How many separate runs of pages a batch lists before it invalidates the
/// whole context instead (runs of adjacent pages are one).
pub const MAX_RUNS: usize = 4;

/// Which scope a batch needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope {
    /// Nothing changed that hardware may have cached.
    Nothing,
    /// The listed pages.
    Pages,
    /// The whole context (more pages than the format's `page_limit`, or a
    /// table was unlinked on a format whose per-page recipe does not cover
    /// cached table entries).
    Context,
}

/// The invalidations one table operation needs, and the tables it unlinked.
///
/// Run it with [`flush`](Self::flush) or [`flush_with`](Self::flush_with), or
/// discard it with [`ignore`](Self::ignore) (for a table no hardware walks
/// yet). Tables an operation unlinks are freed only after the batch's
/// invalidation has run, so no walk cache can still point at a frame the
/// allocator hands out again:
/// - `flush_with` that fails returns the batch inside [`Unflushed`]: retry
///   it, or drop it;
/// - a batch dropped without `flush` or `ignore` is flushed on this host's
///   instructions ([`crate::instr::Host`]), as `flush()` would; if that
///   fails (a foreign host, a recipe this CPU cannot run) its unlinked
///   tables are never freed: leaked, not handed out while a walker may
///   still use them.
#[must_use = "a changed mapping stays cached until the batch is flushed; call flush() or ignore()"]
pub struct TlbFlush<F: Format> {
    ctx: Context,
    /// Runs of pages: first guest-physical address and page count.
    runs: [(usize, usize); MAX_RUNS],
    nruns: usize,
    pages: usize,
    scope: Scope,
    frees: FrameList,
    ops: FrameOps,
    _format: PhantomData<F>,
}

/// A batch whose invalidation failed, with the error: nothing it unlinked
/// was freed. Retry with `batch.flush_with`, or drop it (see [`TlbFlush`]).
#[must_use = "the batch still holds its invalidation and its unlinked tables"]
pub struct Unflushed<F: Format> {
    /// Why the invalidation failed.
    pub error: FlushError,
    /// The batch, unchanged.
    pub batch: TlbFlush<F>,
}

impl<F: Format> core::fmt::Debug for Unflushed<F> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Unflushed")
            .field("error", &self.error)
            .field("batch", &self.batch)
            .finish()
    }
}

impl<F: Format> core::fmt::Display for Unflushed<F> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "invalidation failed: {}", self.error)
    }
}

impl<F: Format> Drop for TlbFlush<F> {
    #[inline]
    fn drop(&mut self) {
        if self.scope != Scope::Nothing || self.frees.len() != 0 {
            self.flush_on_drop();
        }
    }
}

impl<F: Format> core::fmt::Debug for TlbFlush<F> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("TlbFlush")
            .field("format", &F::NAME)
            .field("scope", &self.scope)
            .field("runs", &self.runs())
            .field("tables_to_free", &self.frees.len())
            .finish()
    }
}

impl<F: Format> TlbFlush<F> {
    #[cold]
    fn flush_on_drop(&mut self) {
        if self.run(&mut crate::instr::Host).is_ok() {
            self.frees.free_all(&self.ops);
        }
    }

    #[inline]
    pub(crate) fn new(ctx: Context, ops: FrameOps) -> Self {
        TlbFlush {
            ctx,
            runs: [(0, 0); MAX_RUNS],
            nruns: 0,
            pages: 0,
            scope: Scope::Nothing,
            frees: FrameList::new(),
            ops,
            _format: PhantomData,
        }
    }

    /// Holds an unlinked table to free once the invalidation has run. The
    /// caller records the invalidation the unlink needs.
    #[inline]
    pub(crate) fn free_later(&mut self, table: u64) {
        // In unlink order: tables go back to the allocator in the order
        // they were found, ascending addresses for a region (a heap that
        // trims its top, as glibc's does, is not asked to shrink per frame).
        self.frees.push_back(&self.ops, table);
    }

    /// Records that a table covering `pages` pages from `gpa` was unlinked.
    #[inline]
    pub(crate) fn add_unlinked(&mut self, gpa: usize, pages: usize) {
        if F::FLUSH.page_covers_tables {
            self.add_pages(gpa, pages);
        } else {
            self.add_context();
        }
    }

    fn runs(&self) -> &[(usize, usize)] {
        self.runs.get(..self.nruns).unwrap_or(&[])
    }

    /// How many unlinked tables wait for this batch.
    pub fn tables_to_free(&self) -> usize {
        self.frees.len()
    }

    /// The context values (root register first) this batch invalidates.
    pub fn context(&self) -> &Context {
        &self.ctx
    }

    /// Records that the leaf mapping `gpa` changed.
    #[inline]
    pub(crate) fn add_page(&mut self, gpa: usize) {
        self.add_pages(gpa, 1);
    }

    /// Records that the `n` pages from `gpa` changed.
    #[inline]
    pub(crate) fn add_pages(&mut self, gpa: usize, n: usize) {
        if self.scope == Scope::Context || n == 0 {
            return;
        }
        let granule = F::LAYOUT.geometry.granule();
        if let Some(last) = self.runs.get_mut(..self.nruns).and_then(|r| r.last_mut()) {
            let last_page = last.0 + (last.1 - 1) * granule;
            if gpa == last_page && n == 1 {
                // The same address twice (a table and the leaf that emptied it).
                return;
            }
            if gpa == last_page + granule {
                last.1 += n;
                self.pages += n;
                self.check_limit();
                return;
            }
        }
        let Some(slot) = self.runs.get_mut(self.nruns) else {
            self.scope = Scope::Context;
            return;
        };
        *slot = (gpa, n);
        self.nruns += 1;
        self.pages += n;
        self.scope = Scope::Pages;
        self.check_limit();
    }

    fn check_limit(&mut self) {
        if self.pages > F::FLUSH.page_limit {
            self.scope = Scope::Context;
        }
    }

    /// Records that a non-leaf entry changed.
    #[inline]
    pub(crate) fn add_context(&mut self) {
        self.scope = Scope::Context;
    }

    /// The scope this batch will invalidate.
    pub fn scope(&self) -> Scope {
        self.scope
    }

    /// The guest-physical addresses invalidated one by one (none unless the
    /// scope is [`Scope::Pages`]), in the order they were recorded.
    pub fn pages(&self) -> impl Iterator<Item = usize> + '_ {
        let granule = F::LAYOUT.geometry.granule();
        let runs = if self.scope == Scope::Pages {
            self.runs()
        } else {
            &[]
        };
        runs.iter()
            .flat_map(move |&(gpa, n)| (0..n).map(move |k| gpa + k * granule))
    }

    /// How many pages [`pages`](Self::pages) yields.
    pub fn page_count(&self) -> usize {
        if self.scope == Scope::Pages {
            self.pages
        } else {
            0
        }
    }

    /// Adds another batch of the same table (the same context: root
    /// register, VMID ...) to this one. A batch of another table is refused
    /// and handed back: its invalidation and its unlinked tables belong to
    /// that table's context.
    // The batch is returned by value: `no_std` has no box to put it in.
    #[allow(clippy::result_large_err)]
    pub fn merge(&mut self, mut other: TlbFlush<F>) -> Result<(), TlbFlush<F>> {
        if other.ctx != self.ctx {
            return Err(other);
        }
        match other.scope {
            Scope::Nothing => {}
            Scope::Context => self.scope = Scope::Context,
            Scope::Pages => {
                for &(gpa, n) in other.runs() {
                    self.add_pages(gpa, n);
                }
            }
        }
        let frees = core::mem::take(&mut other.frees);
        self.frees.append(&self.ops, frees);
        other.scope = Scope::Nothing;
        Ok(())
    }

    /// Drops the batch without invalidating anything, freeing the tables
    /// it unlinked. Correct only when no hardware can have cached the table
    /// (it was never loaded).
    #[inline]
    pub fn ignore(mut self) {
        if self.frees.len() != 0 {
            self.frees.free_all(&self.ops);
        }
        self.scope = Scope::Nothing;
    }

    /// Runs the batch on this host's instructions.
    #[allow(clippy::result_large_err)]
    pub fn flush(self) -> Result<(), Unflushed<F>> {
        self.flush_with(&mut crate::instr::Host)
    }

    /// Runs the batch through `exec`, then frees the tables it unlinked.
    /// If `exec` fails, nothing is freed and the batch comes back in the
    /// error.
    #[allow(clippy::result_large_err)]
    pub fn flush_with(mut self, exec: &mut impl FlushExecutor) -> Result<(), Unflushed<F>> {
        match self.run(exec) {
            Ok(()) => {
                self.frees.free_all(&self.ops);
                self.scope = Scope::Nothing;
                Ok(())
            }
            Err(error) => Err(Unflushed { error, batch: self }),
        }
    }

    fn run(&self, exec: &mut impl FlushExecutor) -> Result<(), FlushError> {
        match self.scope {
            Scope::Nothing => Ok(()),
            Scope::Pages => run(&F::FLUSH.page, &self.ctx, self.pages(), exec),
            Scope::Context => run(&F::FLUSH.context, &self.ctx, core::iter::empty(), exec),
        }?;
        if self.scope != Scope::Nothing || self.frees.len() != 0 {
            exec.complete()?;
        }
        Ok(())
    }
}

/// Runs the format's "everything" recipe (no context needed).
pub fn flush_all<F: Format>(exec: &mut impl FlushExecutor) -> Result<(), FlushError> {
    run(&F::FLUSH.all, &[0; 4], core::iter::empty(), exec)
}

/// Runs `recipe` for the one page `gpa` now (a break-before-make step).
pub(crate) fn run_page(
    recipe: &Recipe,
    ctx: &Context,
    gpa: usize,
    exec: &mut impl FlushExecutor,
) -> Result<(), FlushError> {
    run(recipe, ctx, core::iter::once(gpa), exec)
}

/// Runs the context `recipe` now (a break-before-make step).
pub(crate) fn run_context(
    recipe: &Recipe,
    ctx: &Context,
    exec: &mut impl FlushExecutor,
) -> Result<(), FlushError> {
    run(recipe, ctx, core::iter::empty(), exec)
}

fn resolve(op: Operand, ctx: &Context, gpa: usize) -> Arg {
    match op {
        Operand::Zero => Arg::Zero,
        Operand::Gpa(shift) => Arg::Value((gpa as u64) >> shift),
        Operand::Slot(s) => Arg::Value(ctx.get(s as usize).copied().unwrap_or(0)),
    }
}

fn issue(
    step: &Step,
    ctx: &Context,
    gpa: usize,
    exec: &mut impl FlushExecutor,
) -> Result<(), FlushError> {
    let mut args = [Arg::Zero; 2];
    for (slot, op) in args.iter_mut().zip(step.operands) {
        *slot = resolve(*op, ctx, gpa);
    }
    exec.execute(Issued {
        instr: step.instr,
        args,
    })
}

fn run(
    recipe: &Recipe,
    ctx: &Context,
    mut pages: impl Iterator<Item = usize>,
    exec: &mut impl FlushExecutor,
) -> Result<(), FlushError> {
    let switched = match recipe.current {
        Some((reg, slot)) => exec
            .switch_context(reg, ctx.get(slot as usize).copied().unwrap_or(0))?
            .map(|old| (reg, old)),
        None => None,
    };
    // At most one bit per context register the runtime knows.
    let mut cleared: [Option<(ContextRegister, u64)>; 2] = [None; 2];
    let mut result = Ok(());
    for (slot, &reg) in cleared.iter_mut().zip(recipe.clear) {
        match exec.switch_context(reg, 0) {
            Ok(old) => *slot = old.map(|o| (reg, o)),
            Err(e) => {
                result = Err(e);
                break;
            }
        }
    }
    if result.is_ok() {
        result = recipe
            .before
            .iter()
            .try_for_each(|s| issue(s, ctx, 0, exec));
    }
    if result.is_ok() {
        result = pages.try_for_each(|gpa| {
            recipe
                .each
                .iter()
                .try_for_each(|s| issue(s, ctx, gpa, exec))
        });
    }
    if result.is_ok() {
        result = recipe.after.iter().try_for_each(|s| issue(s, ctx, 0, exec));
    }
    for &(reg, old) in cleared.iter().rev().flatten() {
        exec.restore_context(reg, old)?;
    }
    if let Some((reg, old)) = switched {
        exec.restore_context(reg, old)?;
    }
    result
}

/// What a [`Recorder`] saw.
#[cfg(feature = "alloc")]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event {
    /// An instruction.
    Instr(Issued),
    /// A context register was switched to this value.
    Switch(ContextRegister, u64),
    /// A context register was restored to this value.
    Restore(ContextRegister, u64),
}

/// An executor that records instead of executing: what tests assert on, and
/// what the demo prints. It behaves as if `current` held `current_value`.
#[cfg(feature = "alloc")]
#[derive(Clone, Debug, Default)]
pub struct Recorder {
    /// Everything issued, in order.
    pub events: alloc::vec::Vec<Event>,
    /// The value context registers hold before a switch.
    pub current_value: u64,
    /// Whether HCR_EL2.TGE reads 1 (a VHE host in its own context).
    pub tge: bool,
}

#[cfg(feature = "alloc")]
impl Recorder {
    /// Just the instructions, in order.
    pub fn instrs(&self) -> alloc::vec::Vec<Issued> {
        self.events
            .iter()
            .filter_map(|e| {
                if let Event::Instr(i) = e {
                    Some(*i)
                } else {
                    None
                }
            })
            .collect()
    }
}

#[cfg(feature = "alloc")]
impl FlushExecutor for Recorder {
    fn execute(&mut self, op: Issued) -> Result<(), FlushError> {
        self.events.push(Event::Instr(op));
        Ok(())
    }

    fn switch_context(
        &mut self,
        reg: ContextRegister,
        value: u64,
    ) -> Result<Option<u64>, FlushError> {
        let now = match reg {
            ContextRegister::HcrEl2Tge => self.tge as u64,
            ContextRegister::VttbrEl2 => self.current_value,
        };
        if value == now {
            return Ok(None);
        }
        self.events.push(Event::Switch(reg, value));
        Ok(Some(now))
    }

    fn restore_context(&mut self, reg: ContextRegister, old: u64) -> Result<(), FlushError> {
        self.events.push(Event::Restore(reg, old));
        Ok(())
    }
}
