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
}

/// The instruction sequence for one scope.
#[derive(Clone, Copy, Debug)]
pub struct Recipe {
    /// The register to make current, and the context slot holding its value.
    pub current: Option<(ContextRegister, u8)>,
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
    /// One guest-physical page.
    pub page: Recipe,
    /// Everything of this table's context (EPTP, VMID).
    pub context: Recipe,
    /// Everything.
    pub all: Recipe,
}

const STUB_RECIPE: Recipe = Recipe {
    current: None,
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
}

/// How many leaves a batch invalidates one by one before it invalidates the
/// whole context instead.
pub const MAX_PAGES: usize = 16;

/// How many unlinked tables one batch can hold for freeing after its
/// invalidation; an operation that empties more leaves the rest in place
/// (empty, invalid, reused by later maps, freed on drop).
pub const MAX_FREES: usize = 16;

/// Gives frames back to the allocator (`PagingHandler::dealloc_frames`).
pub(crate) type Dealloc = fn(memory_addr::PhysAddr, usize);

/// Which scope a batch needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope {
    /// Nothing changed that hardware may have cached.
    Nothing,
    /// The listed leaves.
    Pages,
    /// The whole context (too many leaves, or a table was freed).
    Context,
}

/// The invalidations one table operation needs. Run it with
/// [`flush`](Self::flush) or [`flush_with`](Self::flush_with), or drop it
/// explicitly with [`ignore`](Self::ignore) (for a table no hardware walks
/// yet).
///
/// Tables an operation unlinks are freed only after the batch's
/// invalidation has run (or when it is ignored or dropped), so no walk
/// cache can still point at a frame the allocator hands out again. If the
/// invalidation fails, they are leaked rather than freed.
#[must_use = "a changed mapping stays cached until the batch is flushed; call flush() or ignore()"]
pub struct TlbFlush<F: Format> {
    ctx: Context,
    pages: [usize; MAX_PAGES],
    len: usize,
    scope: Scope,
    frees: [usize; MAX_FREES],
    nfree: usize,
    frames_per_table: usize,
    dealloc: Dealloc,
    _format: PhantomData<F>,
}

impl<F: Format> Drop for TlbFlush<F> {
    fn drop(&mut self) {
        for &pa in &self.frees[..self.nfree] {
            (self.dealloc)(memory_addr::PhysAddr::from(pa), self.frames_per_table);
        }
    }
}

impl<F: Format> core::fmt::Debug for TlbFlush<F> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("TlbFlush")
            .field("format", &F::NAME)
            .field("scope", &self.scope)
            .field("pages", &&self.pages[..self.len])
            .finish()
    }
}

impl<F: Format> TlbFlush<F> {
    pub(crate) fn new(ctx: Context, dealloc: Dealloc, frames_per_table: usize) -> Self {
        TlbFlush {
            ctx,
            pages: [0; MAX_PAGES],
            len: 0,
            scope: Scope::Nothing,
            frees: [0; MAX_FREES],
            nfree: 0,
            frames_per_table,
            dealloc,
            _format: PhantomData,
        }
    }

    /// Whether another unlinked table can be held for freeing.
    pub(crate) fn can_free(&self) -> bool {
        self.nfree < MAX_FREES
    }

    /// Holds an unlinked table, which translated the addresses from `gpa`,
    /// to free once the invalidation has run.
    pub(crate) fn free_later(&mut self, table: usize, gpa: usize) {
        debug_assert!(self.can_free());
        self.frees[self.nfree] = table;
        self.nfree += 1;
        if F::FLUSH.page_covers_tables {
            self.add_page(gpa);
        } else {
            self.add_context();
        }
    }

    /// How many unlinked tables wait for this batch.
    pub fn tables_to_free(&self) -> usize {
        self.nfree
    }

    /// Records that the leaf mapping `gpa` changed.
    pub(crate) fn add_page(&mut self, gpa: usize) {
        match self.scope {
            Scope::Context => {}
            // The same address twice (a table and the leaf that emptied it).
            _ if self.len > 0 && self.pages[self.len - 1] == gpa => {}
            _ if self.len == MAX_PAGES => self.scope = Scope::Context,
            _ => {
                self.pages[self.len] = gpa;
                self.len += 1;
                self.scope = Scope::Pages;
            }
        }
    }

    /// Records that a non-leaf entry changed.
    pub(crate) fn add_context(&mut self) {
        self.scope = Scope::Context;
    }

    /// The scope this batch will invalidate.
    pub fn scope(&self) -> Scope {
        self.scope
    }

    /// The guest-physical addresses invalidated one by one (empty unless the
    /// scope is [`Scope::Pages`]).
    pub fn pages(&self) -> &[usize] {
        if self.scope == Scope::Pages {
            &self.pages[..self.len]
        } else {
            &[]
        }
    }

    /// Adds another batch of the same table to this one.
    pub fn merge(&mut self, mut other: TlbFlush<F>) {
        match other.scope {
            Scope::Nothing => {}
            Scope::Context => self.scope = Scope::Context,
            Scope::Pages => other.pages().iter().for_each(|p| self.add_page(*p)),
        }
        while other.nfree > 0 {
            other.nfree -= 1;
            let pa = other.frees[other.nfree];
            if self.can_free() {
                // Its invalidation came along with `other`'s scope above.
                self.frees[self.nfree] = pa;
                self.nfree += 1;
            } else {
                // No room: free it when `other` drops would be too early,
                // so it is leaked (it is already unlinked and zeroed).
            }
        }
    }

    /// Drops the batch without invalidating anything. Correct only when no
    /// hardware can have cached the table (it was never loaded).
    pub fn ignore(self) {}

    /// Runs the batch on this host's instructions.
    pub fn flush(self) -> Result<(), FlushError> {
        self.flush_with(&mut crate::instr::Host)
    }

    /// Runs the batch through `exec`, then frees the tables it unlinked.
    pub fn flush_with(mut self, exec: &mut impl FlushExecutor) -> Result<(), FlushError> {
        let result = match self.scope {
            Scope::Nothing => Ok(()),
            Scope::Pages => run(&F::FLUSH.page, &self.ctx, &self.pages[..self.len], exec),
            Scope::Context => run(&F::FLUSH.context, &self.ctx, &[], exec),
        };
        if result.is_err() {
            // Not invalidated: a walk cache may still use these tables.
            self.nfree = 0;
        }
        result
    }
}

/// Runs the format's "everything" recipe (no context needed).
pub fn flush_all<F: Format>(exec: &mut impl FlushExecutor) -> Result<(), FlushError> {
    run(&F::FLUSH.all, &[0; 4], &[], exec)
}

fn resolve(op: Operand, ctx: &Context, gpa: usize) -> Arg {
    match op {
        Operand::Zero => Arg::Zero,
        Operand::Gpa(shift) => Arg::Value((gpa as u64) >> shift),
        Operand::Slot(s) => Arg::Value(ctx[s as usize]),
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
    pages: &[usize],
    exec: &mut impl FlushExecutor,
) -> Result<(), FlushError> {
    let switched = match recipe.current {
        Some((reg, slot)) => exec
            .switch_context(reg, ctx[slot as usize])?
            .map(|old| (reg, old)),
        None => None,
    };
    let mut result = recipe
        .before
        .iter()
        .try_for_each(|s| issue(s, ctx, 0, exec));
    if result.is_ok() {
        result = pages.iter().try_for_each(|&gpa| {
            recipe
                .each
                .iter()
                .try_for_each(|s| issue(s, ctx, gpa, exec))
        });
    }
    if result.is_ok() {
        result = recipe.after.iter().try_for_each(|s| issue(s, ctx, 0, exec));
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
        if value == self.current_value {
            return Ok(None);
        }
        self.events.push(Event::Switch(reg, value));
        Ok(Some(self.current_value))
    }

    fn restore_context(&mut self, reg: ContextRegister, old: u64) -> Result<(), FlushError> {
        self.events.push(Event::Restore(reg, old));
        Ok(())
    }
}
