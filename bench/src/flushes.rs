//! The untimed pass: what invalidation each npt operation asks for.
//!
//! Each batch is run through a [`Recorder`], so the counts include the
//! instructions the format's recipe would issue on its host.

use crate::fail;
use crate::handlers::{Pool, FRAME};
use crate::impls::{Npt, Table, GPA_BASE, HPA_BASE};
use npt::flush::{Recorder, Scope};
use npt::{Format, GuestPhysAddr, HostPhysAddr, MappingFlags, TlbFlush};

/// What the batches of one operation asked for.
#[derive(Clone, Debug, Default)]
pub struct Tally {
    /// The operation.
    pub op: String,
    /// How many batches it returned.
    pub batches: usize,
    /// Batches by scope: nothing, pages, context.
    pub scopes: [usize; 3],
    /// Per-page invalidations, summed.
    pub pages: usize,
    /// Unlinked tables the batches freed.
    pub tables_to_free: usize,
    /// Instructions the recorder saw.
    pub instrs: usize,
}

impl Tally {
    fn new(op: String) -> Self {
        Tally {
            op,
            ..Tally::default()
        }
    }

    fn add<F: Format>(&mut self, batch: Result<TlbFlush<F>, npt::Error>) {
        let batch = batch.unwrap_or_else(|e| fail(&format!("{}: {}: {e:?}", F::NAME, self.op)));
        self.batches += 1;
        self.scopes[match batch.scope() {
            Scope::Nothing => 0,
            Scope::Pages => 1,
            Scope::Context => 2,
        }] += 1;
        self.pages += batch.page_count();
        self.tables_to_free += batch.tables_to_free();
        let mut rec = Recorder::default();
        if let Err(e) = batch.flush_with(&mut rec) {
            fail(&format!(
                "{}: {}: recording the flush: {e}",
                F::NAME,
                self.op
            ));
        }
        self.instrs += rec.instrs().len();
    }

    /// The scopes, as "Context" or "Pages x3, Nothing x5".
    pub fn scope_text(&self) -> String {
        let names = ["Nothing", "Pages", "Context"];
        let used: Vec<(usize, &str)> = self
            .scopes
            .iter()
            .zip(names)
            .filter(|(&n, _)| n > 0)
            .map(|(&n, name)| (n, name))
            .collect();
        match used.as_slice() {
            [(_, name)] if self.batches == 1 => (*name).to_string(),
            _ => used
                .iter()
                .map(|(n, name)| format!("{name} x{}", crate::work::thousands(*n)))
                .collect::<Vec<_>>()
                .join(", "),
        }
    }
}

/// The npt operations of the work rows on format `F`, `region` bytes.
pub fn tally<F: Format>(region: usize) -> Vec<Tally> {
    let size = crate::work::human_size(region);
    let gpa = GuestPhysAddr::from(GPA_BASE);
    let hpa = HostPhysAddr::from(HPA_BASE);
    let rw = MappingFlags::READ | MappingFlags::WRITE;
    let mut rows = Vec::new();

    let mut t = Npt::<F, Pool>::create();
    let mut row = Tally::new(format!("map_region {size} @4K (empty table)"));
    row.add(t.inner().map_region(gpa, hpa, region, rw, false));
    rows.push(row);

    let mut row = Tally::new(format!("protect_region {size} RW->R"));
    row.add(t.inner().protect_region(gpa, region, MappingFlags::READ));
    rows.push(row);

    let mut row = Tally::new(format!("unmap_region {size}"));
    row.add(t.inner().unmap_region(gpa, region));
    rows.push(row);
    drop(t);

    let mut t = Npt::<F, Pool>::create();
    let pages = region / FRAME;
    let mut row = Tally::new(format!(
        "{} x map 4K (empty table)",
        crate::work::thousands(pages)
    ));
    for k in 0..pages {
        let off = k * FRAME;
        row.add(t.inner().map(gpa + off, hpa + off, FRAME, rw));
    }
    rows.push(row);
    rows
}
