//! Stage 2: the generic node tree to a typed model of one format.
//!
//! This stage knows which keys exist, which are required, and what kind of
//! literal each takes. It reports unknown, duplicated and missing keys and
//! wrong literal kinds, and keeps a span on every model node so that the
//! checks in [`crate::check`] can point at the offending token. Cross-item
//! rules (overlaps, geometry, encodings) are not checked here.

use crate::errors::Errors;
use crate::eval::Expr;
use crate::parse::{Body, Node, SpecTree};
use proc_macro2::{Span, TokenStream, TokenTree};
use syn::{Ident, LitStr};

/// A value with the span it came from.
#[derive(Clone, Copy, Debug)]
pub struct Spanned<T> {
    pub value: T,
    pub span: Span,
}

/// An inclusive bit range `hi:lo` as the manuals write it.
#[derive(Clone, Copy, Debug)]
pub struct BitRange {
    pub hi: u32,
    pub lo: u32,
    pub span: Span,
}

impl BitRange {
    pub fn width(&self) -> u32 {
        self.hi - self.lo + 1
    }
    /// The mask of the range within a u64 (callers check `hi < 64` first).
    pub fn mask(&self) -> u64 {
        let w = self.width();
        let m = if w >= 64 { u64::MAX } else { (1u64 << w) - 1 };
        m << self.lo
    }
}

/// A whole format.
#[derive(Clone)]
pub struct Format {
    pub name: Ident,
    pub docs: Vec<String>,
    pub cite: LitStr,
    pub arch: Spanned<Arch>,
    pub entry: Ident,
    pub flags_ty: Ident,
    pub params_ty: Ident,
    pub geometry: Geometry,
    pub bits: Vec<Flag>,
    pub fields: Vec<Field>,
    pub address: OutputAddress,
    pub descriptors: Descriptors,
    pub permissions: Permissions,
    pub params: Vec<Param>,
    pub registers: Vec<Register>,
    pub flush: Flush,
    /// A param that narrows the output width at run time (the host's
    /// physical address size), bounded by `geometry.output_bits`.
    pub output_limit: Option<Ident>,
    /// A bit software may use, marking leaves write-protected for dirty
    /// logging.
    pub dirty_log_bit: Option<Ident>,
    /// Accessed and dirty bits the CPU sets in leaves by itself.
    pub hardware_dirty: Option<HardwareDirty>,
    /// Conditions on the parameters and the root address, checked when a
    /// table is made and by every register builder.
    pub requires: Vec<Require>,
    /// Other formats sharing these descriptors but with their own geometry.
    pub variants: Vec<FormatVariant>,
}

/// `variant Name { cite = ..; geometry { .. } ... }`: another format that
/// shares the base format's bits, fields and params (so its flags, enum
/// and params types) and overrides any other part: the geometry, the
/// output address, the descriptors, the permissions, registers and
/// `require` rules by name (a new name adds one), the flush recipes, the
/// output limit, the dirty-logging bits. A variant that changes how an
/// entry decodes (output address, descriptors) names its own `entry`
/// type.
#[derive(Clone)]
pub struct FormatVariant {
    pub name: Ident,
    pub docs: Vec<String>,
    pub cite: LitStr,
    pub entry: Option<Ident>,
    pub geometry: Option<Geometry>,
    pub address: Option<OutputAddress>,
    pub descriptors: Option<Descriptors>,
    pub permissions: Option<Permissions>,
    pub registers: Vec<Register>,
    pub requires: Vec<Require>,
    pub flush: Option<Flush>,
    pub output_limit: Option<Ident>,
    pub dirty_log_bit: Option<Ident>,
    pub hardware_dirty: Option<HardwareDirty>,
}

impl Format {
    /// The format a variant describes, as a whole format of its own: the
    /// base with the variant's parts put in.
    pub fn variant(&self, v: &FormatVariant) -> Format {
        let mut f = self.clone();
        f.name = v.name.clone();
        f.docs = v.docs.clone();
        f.cite = v.cite.clone();
        if let Some(e) = &v.entry {
            f.entry = e.clone();
        }
        if let Some(g) = &v.geometry {
            f.geometry = g.clone();
        }
        if let Some(a) = &v.address {
            f.address = a.clone();
        }
        if let Some(d) = &v.descriptors {
            f.descriptors = d.clone();
        }
        if let Some(p) = &v.permissions {
            f.permissions = p.clone();
        }
        for r in &v.registers {
            match f.registers.iter_mut().find(|x| x.name == r.name) {
                Some(x) => *x = r.clone(),
                None => f.registers.push(r.clone()),
            }
        }
        for q in &v.requires {
            match f.requires.iter_mut().find(|x| x.name == q.name) {
                Some(x) => *x = q.clone(),
                None => f.requires.push(q.clone()),
            }
        }
        if let Some(fl) = &v.flush {
            f.flush = fl.clone();
        }
        if v.output_limit.is_some() {
            f.output_limit = v.output_limit.clone();
        }
        if v.dirty_log_bit.is_some() {
            f.dirty_log_bit = v.dirty_log_bit.clone();
        }
        if v.hardware_dirty.is_some() {
            f.hardware_dirty = v.hardware_dirty.clone();
        }
        f.variants = Vec::new();
        f
    }
}

/// The instruction-set architecture whose hardware walks this format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Arch {
    X86_64,
    Aarch64,
    Riscv64,
}

impl Arch {
    pub fn target_arch(self) -> &'static str {
        match self {
            Arch::X86_64 => "x86_64",
            Arch::Aarch64 => "aarch64",
            Arch::Riscv64 => "riscv64",
        }
    }
}

#[derive(Clone)]
pub struct Geometry {
    pub cite: Option<LitStr>,
    pub granule: Spanned<u64>,
    pub input_bits: Spanned<u64>,
    pub output_bits: Spanned<u64>,
    pub root_tables: Spanned<u64>,
    pub root_align: Spanned<u64>,
    pub levels: Vec<Level>,
    /// Span of the `geometry` key, for errors about the geometry as a whole.
    pub span: Span,
}

#[derive(Clone)]
pub struct Level {
    pub name: Ident,
    pub docs: Vec<String>,
    pub number: Spanned<u64>,
    pub index: BitRange,
    pub leaf: Option<Spanned<u64>>,
}

#[derive(Clone)]
pub struct Flag {
    pub name: Ident,
    pub docs: Vec<String>,
    pub bit: Spanned<u64>,
}

#[derive(Clone)]
pub struct Field {
    pub name: Ident,
    pub docs: Vec<String>,
    pub bits: BitRange,
    pub ty: Ident,
    pub variants: Vec<Variant>,
}

#[derive(Clone)]
pub struct Variant {
    pub name: Ident,
    pub docs: Vec<String>,
    pub value: Spanned<u64>,
}

#[derive(Clone)]
pub struct OutputAddress {
    pub bits: BitRange,
    pub pa_low_bit: Spanned<u64>,
}

#[derive(Clone)]
pub struct Descriptors {
    pub cite: Option<LitStr>,
    pub present: Pred,
    pub table: Kind,
    pub block: Option<Kind>,
    pub page: Kind,
    pub reserved: Vec<Reserved>,
    /// Flags and fields of a live leaf that may change only by
    /// break-before-make.
    pub break_before_make: Vec<Ident>,
}

/// A reserved leaf encoding: every predicate holds.
#[derive(Clone)]
pub struct Reserved {
    pub name: Ident,
    pub when: Vec<Pred>,
    pub reason: LitStr,
}

/// How a descriptor kind is recognised and what building one sets.
#[derive(Clone)]
pub struct Kind {
    pub is: Pred,
    pub set: Vec<Assign>,
    pub span: Span,
}

/// A predicate over single-bit flags.
#[derive(Clone)]
pub enum Pred {
    Always,
    Any(Vec<Ident>),
    All(Vec<Ident>),
    None(Vec<Ident>),
}

/// One assignment in an encoding: set a flag, or give a field a variant.
#[derive(Clone)]
pub enum Assign {
    Flag(Ident),
    Field(Ident, Ident),
}

/// `page_table_multiarch::MappingFlags`, by the names the spec uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum MFlag {
    Read,
    Write,
    Execute,
    User,
    Device,
    Uncached,
}

impl MFlag {
    pub const ALL: [MFlag; 6] = [
        MFlag::Read,
        MFlag::Write,
        MFlag::Execute,
        MFlag::User,
        MFlag::Device,
        MFlag::Uncached,
    ];

    pub fn from_name(s: &str) -> Option<MFlag> {
        Some(match s {
            "READ" => MFlag::Read,
            "WRITE" => MFlag::Write,
            "EXECUTE" => MFlag::Execute,
            "USER" => MFlag::User,
            "DEVICE" => MFlag::Device,
            "UNCACHED" => MFlag::Uncached,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            MFlag::Read => "READ",
            MFlag::Write => "WRITE",
            MFlag::Execute => "EXECUTE",
            MFlag::User => "USER",
            MFlag::Device => "DEVICE",
            MFlag::Uncached => "UNCACHED",
        }
    }

    /// The bit of this flag in `MappingFlags` (page_table_entry 0.6).
    pub fn bit(self) -> usize {
        match self {
            MFlag::Read => 1 << 0,
            MFlag::Write => 1 << 1,
            MFlag::Execute => 1 << 2,
            MFlag::User => 1 << 3,
            MFlag::Device => 1 << 4,
            MFlag::Uncached => 1 << 5,
        }
    }
}

#[derive(Clone)]
pub struct Permissions {
    /// Whether some `map` or `forbid` could not be read (checks that need
    /// all of them then stay quiet rather than report follow-on errors).
    pub incomplete: bool,
    pub cite: Option<LitStr>,
    pub ignore: Vec<Spanned<MFlag>>,
    pub mappings: Vec<Mapping>,
    pub forbids: Vec<Forbid>,
}

/// A table from the combinations of some `MappingFlags` to encodings.
#[derive(Clone)]
pub struct Mapping {
    pub governs: Vec<Spanned<MFlag>>,
    pub rows: Vec<Row>,
}

#[derive(Clone)]
pub struct Row {
    pub flags: Vec<Spanned<MFlag>>,
    pub assigns: Vec<Assign>,
    pub span: Span,
}

/// A combination of `MappingFlags` the format refuses, with the reason.
#[derive(Clone)]
pub struct Forbid {
    pub name: Ident,
    /// Each flag with whether it must be present (`true`) or absent.
    pub flags: Vec<(Spanned<MFlag>, bool)>,
    pub reason: LitStr,
    /// A param that lifts the refusal when non-zero (a CPU capability the
    /// caller says it has: `unless = execute_only;`).
    pub unless: Option<Ident>,
}

/// A run-time parameter of the root register (a VMID, say).
#[derive(Clone)]
pub struct Param {
    pub name: Ident,
    pub docs: Vec<String>,
    pub width: Spanned<u64>,
    /// The value `Default` gives (0 if absent).
    pub default: Option<Spanned<u64>>,
}

#[derive(Clone)]
pub struct Register {
    pub name: Ident,
    pub docs: Vec<String>,
    pub cite: Option<LitStr>,
    pub root: bool,
    pub fields: Vec<RegField>,
}

#[derive(Clone)]
pub struct RegField {
    pub name: Ident,
    pub docs: Vec<String>,
    pub bits: BitRange,
    pub value: Expr,
}

/// `hardware_dirty { accessed = A; dirty = D; enabled_by = PARAM; }`: the
/// CPU sets `accessed` in a leaf it uses and `dirty` in one it writes
/// through, when the param (if named) is non-zero. Or, with
/// `writable_clean = DBM;` instead of `dirty` (Arm FEAT_HAFDBS), the CPU
/// gives a leaf that has the bit and no write permission its write
/// permission on the first write: the dirty state is the write permission.
#[derive(Clone)]
pub struct HardwareDirty {
    pub cite: Option<LitStr>,
    pub accessed: Ident,
    pub dirty: Option<Ident>,
    pub writable_clean: Option<Ident>,
    pub enabled_by: Option<Ident>,
    pub span: Span,
}

#[derive(Clone)]
pub struct Require {
    pub name: Ident,
    pub cite: Option<LitStr>,
    pub when: Expr,
    pub reason: LitStr,
}

#[derive(Clone)]
pub struct Flush {
    pub cite: Option<LitStr>,
    pub invalidate_on_map: Spanned<bool>,
    pub page_covers_tables: Spanned<bool>,
    /// Pages a batch invalidates one by one before it invalidates the
    /// whole context instead.
    pub page_limit: Option<Spanned<u64>>,
    /// Whether replacing a block by a table of smaller leaves needs
    /// break-before-make (absent: it does, the safe answer).
    pub split_break_before_make: Option<Spanned<bool>>,
    /// Whether a permission fault itself drops the faulting CPU's cached
    /// translation for the address (EPT violations do), so relaxing the
    /// entry in the fault handler needs no invalidation.
    pub fault_invalidates: Option<Spanned<bool>>,
    pub page: Recipe,
    pub context: Recipe,
    pub all: Recipe,
}

#[derive(Clone)]
pub struct Recipe {
    pub current: Option<Ident>,
    /// Register bits that must read 0 while the recipe runs.
    pub clear: Vec<Ident>,
    pub before: Vec<Step>,
    pub each: Vec<Step>,
    pub after: Vec<Step>,
}

#[derive(Clone)]
pub struct Step {
    pub instr: Ident,
    pub operands: Vec<Operand>,
}

#[derive(Clone)]
pub enum Operand {
    /// The zero register / "all".
    Zero,
    /// The guest-physical address shifted right.
    Gpa(u32, Span),
    /// A run-time parameter (VMID) or a register value, by name.
    Name(Ident),
}

// ---------------------------------------------------------------------------
// Key bookkeeping.

/// Reads the nodes of one block: finds each key once, reports duplicates at
/// the second occurrence (pointing back at the first), and reports keys that
/// nobody asked for.
struct Block<'a> {
    nodes: &'a [Node],
    used: Vec<bool>,
    what: &'static str,
    span: Span,
}

impl<'a> Block<'a> {
    fn new(nodes: &'a [Node], what: &'static str, span: Span) -> Self {
        Block {
            nodes,
            used: vec![false; nodes.len()],
            what,
            span,
        }
    }

    /// The single node with `key`, if any.
    fn one(&mut self, key: &str, errs: &mut Errors) -> Option<&'a Node> {
        let mut found: Option<&'a Node> = None;
        for (i, node) in self.nodes.iter().enumerate() {
            if node.key == key {
                self.used[i] = true;
                if let Some(first) = found {
                    errs.conflict(
                        node.span(),
                        format!("duplicate key `{key}` in {}; remove one of them", self.what),
                        first.span(),
                        format!("`{key}` first defined here"),
                    );
                } else {
                    found = Some(node);
                }
            }
        }
        found
    }

    fn required(&mut self, key: &str, hint: &str, errs: &mut Errors) -> Option<&'a Node> {
        let node = self.one(key, errs);
        if node.is_none() {
            errs.error(
                self.span,
                format!(
                    "{} is missing the required key `{key}`: add `{hint}`",
                    self.what
                ),
            );
        }
        node
    }

    /// Every node with `key` (for repeated items such as `level`).
    fn all(&mut self, key: &str) -> Vec<&'a Node> {
        let mut out = Vec::new();
        for (i, node) in self.nodes.iter().enumerate() {
            if node.key == key {
                self.used[i] = true;
                out.push(node);
            }
        }
        out
    }

    /// Reports every node no reader asked for.
    fn finish(self, allowed: &[&str], errs: &mut Errors) {
        for (node, used) in self.nodes.iter().zip(&self.used) {
            if !used {
                errs.error(
                    node.span(),
                    format!(
                        "unknown key `{}` in {}; expected one of: {}",
                        node.key,
                        self.what,
                        allowed.join(", ")
                    ),
                );
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Value readers. Each reports a wrong kind of value and returns `None`.

fn value_of<'a>(node: &'a Node, errs: &mut Errors, expected: &str) -> Option<&'a TokenStream> {
    no_args(node, errs);
    match &node.body {
        Body::Value(v) => Some(v),
        _ => {
            errs.error(
                node.span(),
                format!(
                    "`{}` takes a value: write `{} = {expected};`",
                    node.key, node.key
                ),
            );
            None
        }
    }
}

fn block_of<'a>(node: &'a Node, errs: &mut Errors) -> Option<(&'a [Node], Span)> {
    match &node.body {
        Body::Block(nodes, span) => Some((nodes, *span)),
        _ => {
            errs.error(
                node.span(),
                format!(
                    "`{}` takes a block: write `{} {{ ... }}`",
                    node.key, node.key
                ),
            );
            None
        }
    }
}

fn no_args(node: &Node, errs: &mut Errors) {
    if let Some(first) = node.args.first() {
        errs.error(
            first.span(),
            format!("unexpected token after `{}`", node.key),
        );
    }
}

/// The single name after a key, as in `level PML4 { ... }`.
fn name_arg(node: &Node, errs: &mut Errors, example: &str) -> Option<Ident> {
    match node.args.as_slice() {
        [TokenTree::Ident(id)] => Some(id.clone()),
        _ => {
            errs.error(
                node.span(),
                format!("`{}` needs one name: `{} {example}`", node.key, node.key),
            );
            None
        }
    }
}

fn single_token(v: &TokenStream) -> Option<TokenTree> {
    let mut it = v.clone().into_iter();
    let first = it.next()?;
    if it.next().is_some() {
        None
    } else {
        Some(first)
    }
}

fn first_span(v: &TokenStream) -> Span {
    v.clone()
        .into_iter()
        .next()
        .map(|t| t.span())
        .unwrap_or_else(Span::call_site)
}

/// An integer, with optional `K`, `M`, `G` or `T` suffix (binary multiples).
fn int_value(node: &Node, errs: &mut Errors) -> Option<Spanned<u64>> {
    let v = value_of(node, errs, "an integer")?;
    let span = first_span(v);
    let parsed = single_token(v).and_then(|t| match t {
        TokenTree::Literal(lit) => Some(lit),
        _ => None,
    });
    let Some(lit) = parsed else {
        errs.error(
            span,
            format!(
                "`{}` takes an integer literal such as `48` or `4K`",
                node.key
            ),
        );
        return None;
    };
    match parse_int(&lit) {
        Ok(value) => Some(Spanned { value, span }),
        Err(msg) => {
            errs.error(span, format!("`{}`: {msg}", node.key));
            None
        }
    }
}

fn parse_int(lit: &proc_macro2::Literal) -> Result<u64, String> {
    let syn::Lit::Int(lit) = syn::Lit::new(lit.clone()) else {
        return Err("expected an integer literal".to_string());
    };
    sized_int(&lit)
}

/// An integer literal's value with its size suffix applied (`16K` is
/// 16384): K, M, G and T are powers of 1024. Expressions use it too, so
/// `match granule { 16K => .. }` means what it says.
pub fn sized_int(lit: &syn::LitInt) -> Result<u64, String> {
    let base: u64 = lit
        .base10_digits()
        .parse()
        .map_err(|_| "expected an integer literal".to_string())?;
    let mult: u64 = match lit.suffix() {
        "" => 1,
        "K" => 1 << 10,
        "M" => 1 << 20,
        "G" => 1 << 30,
        "T" => 1 << 40,
        s => {
            return Err(format!(
                "unknown size suffix `{s}`; use K, M, G or T (powers of 1024)"
            ))
        }
    };
    base.checked_mul(mult)
        .ok_or_else(|| "value does not fit in 64 bits".to_string())
}

fn lit_int(tt: &TokenTree) -> Option<u64> {
    match tt {
        TokenTree::Literal(l) => {
            let s = l.to_string();
            if s.starts_with('"') || s.starts_with('\'') {
                return None;
            }
            parse_int(l).ok()
        }
        _ => None,
    }
}

fn bool_value(node: &Node, errs: &mut Errors) -> Option<Spanned<bool>> {
    let v = value_of(node, errs, "true")?;
    let span = first_span(v);
    match single_token(v) {
        Some(TokenTree::Ident(id)) if id == "true" => Some(Spanned { value: true, span }),
        Some(TokenTree::Ident(id)) if id == "false" => Some(Spanned { value: false, span }),
        _ => {
            errs.error(span, format!("`{}` takes `true` or `false`", node.key));
            None
        }
    }
}

fn str_value(node: &Node, errs: &mut Errors) -> Option<LitStr> {
    let v = value_of(node, errs, "\"...\"")?;
    match syn::parse2::<LitStr>(v.clone()) {
        Ok(s) => Some(s),
        Err(_) => {
            errs.error(
                first_span(v),
                format!("`{}` takes a string literal", node.key),
            );
            None
        }
    }
}

fn ident_value(node: &Node, errs: &mut Errors) -> Option<Ident> {
    let v = value_of(node, errs, "Name")?;
    match single_token(v) {
        Some(TokenTree::Ident(id)) => Some(id),
        _ => {
            errs.error(first_span(v), format!("`{}` takes a type name", node.key));
            None
        }
    }
}

/// `hi:lo` or a single bit `n`.
fn bits_value(node: &Node, errs: &mut Errors) -> Option<BitRange> {
    let v = value_of(node, errs, "hi:lo")?;
    let span = first_span(v);
    let toks: Vec<TokenTree> = v.clone().into_iter().collect();
    let parsed = match toks.as_slice() {
        [hi, TokenTree::Punct(p), lo] if p.as_char() == ':' => lit_int(hi).zip(lit_int(lo)),
        [one] => lit_int(one).map(|b| (b, b)),
        _ => None,
    };
    match parsed {
        Some((hi, lo)) if hi < 1 << 16 && lo < 1 << 16 => Some(BitRange {
            hi: hi as u32,
            lo: lo as u32,
            span,
        }),
        _ => {
            errs.error(span, format!("`{}` takes a bit range written as the manuals do, `hi:lo` (for example `51:12`)", node.key));
            None
        }
    }
}

/// `[A, B, C]`: a bracketed list of token groups separated by commas.
fn list_items(v: &TokenStream, errs: &mut Errors, key: &str) -> Option<Vec<TokenStream>> {
    let span = first_span(v);
    let Some(TokenTree::Group(g)) = single_token(v) else {
        errs.error(span, format!("`{key}` takes a list in brackets, `[A, B]`"));
        return None;
    };
    if g.delimiter() != proc_macro2::Delimiter::Bracket {
        errs.error(span, format!("`{key}` takes a list in brackets, `[A, B]`"));
        return None;
    }
    Some(split_commas(g.stream()))
}

fn split_commas(ts: TokenStream) -> Vec<TokenStream> {
    let mut items = Vec::new();
    let mut cur = TokenStream::new();
    for tt in ts {
        match &tt {
            TokenTree::Punct(p) if p.as_char() == ',' => {
                items.push(std::mem::take(&mut cur));
            }
            _ => cur.extend([tt]),
        }
    }
    if !cur.is_empty() {
        items.push(cur);
    }
    items
}

fn mflag(tt: &TokenStream, errs: &mut Errors) -> Option<(Spanned<MFlag>, bool)> {
    let toks: Vec<TokenTree> = tt.clone().into_iter().collect();
    let (neg, id) = match toks.as_slice() {
        [TokenTree::Ident(id)] => (false, id),
        [TokenTree::Punct(p), TokenTree::Ident(id)] if p.as_char() == '!' => (true, id),
        _ => {
            errs.error(
                first_span(tt),
                "expected a MappingFlags name: READ, WRITE, EXECUTE, USER, DEVICE or UNCACHED",
            );
            return None;
        }
    };
    match MFlag::from_name(&id.to_string()) {
        Some(f) => Some((
            Spanned {
                value: f,
                span: id.span(),
            },
            !neg,
        )),
        None => {
            errs.error(id.span(), format!("unknown MappingFlags name `{id}`; expected READ, WRITE, EXECUTE, USER, DEVICE or UNCACHED"));
            None
        }
    }
}

fn mflag_list(
    v: &TokenStream,
    errs: &mut Errors,
    key: &str,
    allow_neg: bool,
) -> Option<Vec<(Spanned<MFlag>, bool)>> {
    let items = list_items(v, errs, key)?;
    let mut out = Vec::new();
    for item in &items {
        let (f, pos) = mflag(item, errs)?;
        if !pos && !allow_neg {
            errs.error(
                f.span,
                "`!` is not allowed here: list the flags that are present",
            );
            return None;
        }
        out.push((f, pos));
    }
    Some(out)
}

/// `R` or `memtype: WB`, comma-separated.
fn assigns(v: &TokenStream, errs: &mut Errors) -> Option<Vec<Assign>> {
    let mut out = Vec::new();
    for item in split_commas(v.clone()) {
        let toks: Vec<TokenTree> = item.clone().into_iter().collect();
        match toks.as_slice() {
            [TokenTree::Ident(f)] if f != "nothing" => out.push(Assign::Flag(f.clone())),
            [TokenTree::Ident(f)] if f == "nothing" => {}
            [TokenTree::Ident(field), TokenTree::Punct(p), TokenTree::Ident(var)]
                if p.as_char() == ':' =>
            {
                out.push(Assign::Field(field.clone(), var.clone()))
            }
            _ => {
                errs.error(
                    first_span(&item),
                    "expected a flag (`R`), a field value (`memtype: WB`), or `nothing`",
                );
                return None;
            }
        }
    }
    Some(out)
}

fn pred_value(node: &Node, errs: &mut Errors) -> Option<Pred> {
    let v = value_of(node, errs, "any(A, B)")?;
    pred_tokens(v, errs)
}

fn pred_tokens(v: &TokenStream, errs: &mut Errors) -> Option<Pred> {
    let toks: Vec<TokenTree> = v.clone().into_iter().collect();
    let span = first_span(v);
    let usage =
        "a predicate is `always`, `any(A, B)`, `all(A, B)` or `none(A, B)` over single-bit flags";
    match toks.as_slice() {
        [TokenTree::Ident(id)] if id == "always" => Some(Pred::Always),
        [TokenTree::Ident(id), TokenTree::Group(g)]
            if g.delimiter() == proc_macro2::Delimiter::Parenthesis =>
        {
            let mut names = Vec::new();
            for item in split_commas(g.stream()) {
                match single_token(&item) {
                    Some(TokenTree::Ident(n)) => names.push(n),
                    _ => {
                        errs.error(first_span(&item), "expected a single-bit flag name");
                        return None;
                    }
                }
            }
            if names.is_empty() {
                errs.error(g.span(), "name at least one flag in the predicate");
                return None;
            }
            match id.to_string().as_str() {
                "any" => Some(Pred::Any(names)),
                "all" => Some(Pred::All(names)),
                "none" => Some(Pred::None(names)),
                _ => {
                    errs.error(id.span(), usage);
                    None
                }
            }
        }
        _ => {
            errs.error(span, usage);
            None
        }
    }
}

// ---------------------------------------------------------------------------
// The format.

const FORMAT_KEYS: &[&str] = &[
    "cite",
    "arch",
    "entry",
    "flags",
    "params_type",
    "geometry",
    "bit",
    "field",
    "output_address",
    "descriptors",
    "permissions",
    "param",
    "register",
    "flush",
    "variant",
    "output_limit",
    "dirty_log_bit",
    "hardware_dirty",
    "require",
];

/// Builds the model, reporting what it cannot read. Returns `None` when a
/// required part is missing or unreadable (errors are in `errs`).
pub fn build(tree: &SpecTree, errs: &mut Errors) -> Option<Format> {
    let span = tree.name.span();
    let mut b = Block::new(&tree.nodes, "the format", span);
    let cite = b
        .required("cite", "cite = \"<manual, section>\";", errs)
        .and_then(|n| str_value(n, errs));
    let arch = b
        .required("arch", "arch = x86_64;", errs)
        .and_then(|n| arch_value(n, errs));
    let entry = b
        .required("entry", "entry = EptEntry;", errs)
        .and_then(|n| ident_value(n, errs));
    let flags_ty = b
        .required("flags", "flags = EptFlags;", errs)
        .and_then(|n| ident_value(n, errs));
    let params_ty = match b.one("params_type", errs) {
        Some(n) => ident_value(n, errs),
        None => Some(Ident::new(
            &format!("{}Params", tree.name),
            tree.name.span(),
        )),
    };
    let geometry = b
        .required("geometry", "geometry { ... }", errs)
        .and_then(|n| geometry(n, errs));
    let bits: Vec<Flag> = b
        .all("bit")
        .into_iter()
        .filter_map(|n| flag(n, errs))
        .collect();
    let fields: Vec<Field> = b
        .all("field")
        .into_iter()
        .filter_map(|n| field(n, errs))
        .collect();
    let address = b
        .required(
            "output_address",
            "output_address { bits = 51:12; pa_low_bit = 12; }",
            errs,
        )
        .and_then(|n| output_address(n, errs));
    let descriptors = b
        .required("descriptors", "descriptors { ... }", errs)
        .and_then(|n| descriptors(n, errs));
    let permissions = b
        .required("permissions", "permissions { ... }", errs)
        .and_then(|n| permissions(n, errs));
    let params: Vec<Param> = b
        .all("param")
        .into_iter()
        .filter_map(|n| param(n, errs))
        .collect();
    let registers: Vec<Register> = b
        .all("register")
        .into_iter()
        .filter_map(|n| register(n, errs))
        .collect();
    let flush = b
        .required("flush", "flush { ... }", errs)
        .and_then(|n| flush(n, errs));
    let output_limit = b
        .one("output_limit", errs)
        .and_then(|n| ident_value(n, errs));
    let dirty_log_bit = b
        .one("dirty_log_bit", errs)
        .and_then(|n| ident_value(n, errs));
    let hardware_dirty = b
        .one("hardware_dirty", errs)
        .and_then(|n| hardware_dirty(n, errs));
    let requires: Vec<Require> = b
        .all("require")
        .into_iter()
        .filter_map(|n| require(n, errs))
        .collect();
    let variants: Vec<FormatVariant> = b
        .all("variant")
        .into_iter()
        .filter_map(|n| variant(n, errs))
        .collect();
    b.finish(FORMAT_KEYS, errs);
    Some(Format {
        name: tree.name.clone(),
        docs: tree.docs.clone(),
        cite: cite?,
        arch: arch?,
        entry: entry?,
        flags_ty: flags_ty?,
        params_ty: params_ty?,
        geometry: geometry?,
        bits,
        fields,
        address: address?,
        descriptors: descriptors?,
        permissions: permissions?,
        params,
        registers,
        flush: flush?,
        output_limit,
        dirty_log_bit,
        hardware_dirty,
        requires,
        variants,
    })
}

fn hardware_dirty(node: &Node, errs: &mut Errors) -> Option<HardwareDirty> {
    no_args(node, errs);
    let (nodes, span) = block_of(node, errs)?;
    let mut b = Block::new(nodes, "`hardware_dirty`", span);
    let cite = opt_cite(&mut b, errs);
    let accessed = b
        .required("accessed", "accessed = A;", errs)
        .and_then(|n| ident_value(n, errs));
    let dirty = b.one("dirty", errs).and_then(|n| ident_value(n, errs));
    let writable_clean = b
        .one("writable_clean", errs)
        .and_then(|n| ident_value(n, errs));
    let enabled_by = b.one("enabled_by", errs).and_then(|n| ident_value(n, errs));
    b.finish(
        &["cite", "accessed", "dirty", "writable_clean", "enabled_by"],
        errs,
    );
    if dirty.is_some() == writable_clean.is_some() {
        errs.error(
            span,
            "`hardware_dirty` names exactly one of `dirty = BIT;` (the CPU sets a dirty bit) and `writable_clean = BIT;` (the CPU grants write permission to a leaf with that bit: Arm's DBM)",
        );
        return None;
    }
    Some(HardwareDirty {
        cite,
        accessed: accessed?,
        dirty,
        writable_clean,
        enabled_by,
        span,
    })
}

fn variant(node: &Node, errs: &mut Errors) -> Option<FormatVariant> {
    let name = name_arg(
        node,
        errs,
        "Stage2Ipa48 { cite = \"...\"; geometry { ... } }",
    );
    let (nodes, span) = block_of(node, errs)?;
    let mut b = Block::new(nodes, "a `variant`", span);
    let cite = b
        .required("cite", "cite = \"<manual, section>\";", errs)
        .and_then(|n| str_value(n, errs));
    // The parts that define the shared types cannot change.
    for key in [
        "bit",
        "field",
        "param",
        "params_type",
        "flags",
        "arch",
        "variant",
    ] {
        for n in b.all(key) {
            errs.error(
                n.span(),
                format!(
                    "a variant cannot declare `{key}`: it shares the base format's bits, fields and params (one flags type, one params type, one set of field enums) and its architecture; put it in the base format, or write a spec file of its own"
                ),
            );
        }
    }
    let entry = b.one("entry", errs).and_then(|n| ident_value(n, errs));
    let geometry = b.one("geometry", errs).and_then(|n| geometry(n, errs));
    let address = b
        .one("output_address", errs)
        .and_then(|n| output_address(n, errs));
    let descriptors = b
        .one("descriptors", errs)
        .and_then(|n| descriptors(n, errs));
    let permissions = b
        .one("permissions", errs)
        .and_then(|n| permissions(n, errs));
    let registers = b
        .all("register")
        .into_iter()
        .filter_map(|n| register(n, errs))
        .collect();
    let requires = b
        .all("require")
        .into_iter()
        .filter_map(|n| require(n, errs))
        .collect();
    let flush = b.one("flush", errs).and_then(|n| flush(n, errs));
    let output_limit = b
        .one("output_limit", errs)
        .and_then(|n| ident_value(n, errs));
    let dirty_log_bit = b
        .one("dirty_log_bit", errs)
        .and_then(|n| ident_value(n, errs));
    let hardware_dirty = b
        .one("hardware_dirty", errs)
        .and_then(|n| hardware_dirty(n, errs));
    b.finish(VARIANT_KEYS, errs);
    Some(FormatVariant {
        name: name?,
        docs: node.docs.clone(),
        cite: cite?,
        entry,
        geometry,
        address,
        descriptors,
        permissions,
        registers,
        requires,
        flush,
        output_limit,
        dirty_log_bit,
        hardware_dirty,
    })
}

/// What a `variant` may override.
const VARIANT_KEYS: &[&str] = &[
    "cite",
    "entry",
    "geometry",
    "output_address",
    "descriptors",
    "permissions",
    "register",
    "require",
    "flush",
    "output_limit",
    "dirty_log_bit",
    "hardware_dirty",
];

fn arch_value(node: &Node, errs: &mut Errors) -> Option<Spanned<Arch>> {
    let v = value_of(node, errs, "x86_64")?;
    let span = first_span(v);
    let arch = match single_token(v) {
        Some(TokenTree::Ident(id)) => match id.to_string().as_str() {
            "x86_64" => Some(Arch::X86_64),
            "aarch64" => Some(Arch::Aarch64),
            "riscv64" => Some(Arch::Riscv64),
            _ => None,
        },
        _ => None,
    };
    if arch.is_none() {
        errs.error(span, "`arch` is one of `x86_64`, `aarch64`, `riscv64`");
    }
    arch.map(|value| Spanned { value, span })
}

fn opt_cite(b: &mut Block, errs: &mut Errors) -> Option<LitStr> {
    b.one("cite", errs).and_then(|n| str_value(n, errs))
}

fn geometry(node: &Node, errs: &mut Errors) -> Option<Geometry> {
    no_args(node, errs);
    let (nodes, span) = block_of(node, errs)?;
    let mut b = Block::new(nodes, "`geometry`", span);
    let cite = opt_cite(&mut b, errs);
    let granule = b
        .required("granule", "granule = 4K;", errs)
        .and_then(|n| int_value(n, errs));
    let input_bits = b
        .required("input_bits", "input_bits = 48;", errs)
        .and_then(|n| int_value(n, errs));
    let output_bits = b
        .required("output_bits", "output_bits = 52;", errs)
        .and_then(|n| int_value(n, errs));
    let root = b
        .required("root", "root { tables = 1; align = 4K; }", errs)
        .and_then(|n| root(n, errs));
    let levels: Vec<Level> = b
        .all("level")
        .into_iter()
        .filter_map(|n| level(n, errs))
        .collect();
    if levels.is_empty() {
        errs.error(span, "`geometry` declares no levels: add `level NAME { number = ..; index = hi:lo; }` from the root down");
    }
    b.finish(
        &[
            "cite",
            "granule",
            "input_bits",
            "output_bits",
            "root",
            "level",
        ],
        errs,
    );
    let (root_tables, root_align) = root?;
    Some(Geometry {
        cite,
        granule: granule?,
        input_bits: input_bits?,
        output_bits: output_bits?,
        root_tables,
        root_align,
        levels,
        span: node.span(),
    })
}

fn root(node: &Node, errs: &mut Errors) -> Option<(Spanned<u64>, Spanned<u64>)> {
    no_args(node, errs);
    let (nodes, span) = block_of(node, errs)?;
    let mut b = Block::new(nodes, "`root`", span);
    let tables = b
        .required("tables", "tables = 1;", errs)
        .and_then(|n| int_value(n, errs));
    let align = b
        .required("align", "align = 4K;", errs)
        .and_then(|n| int_value(n, errs));
    b.finish(&["tables", "align"], errs);
    Some((tables?, align?))
}

fn level(node: &Node, errs: &mut Errors) -> Option<Level> {
    let name = name_arg(node, errs, "PML4 { ... }");
    let (nodes, span) = block_of(node, errs)?;
    let mut b = Block::new(nodes, "a `level`", span);
    let number = b
        .required("number", "number = 1;", errs)
        .and_then(|n| int_value(n, errs));
    let index = b
        .required("index", "index = 47:39;", errs)
        .and_then(|n| bits_value(n, errs));
    let leaf = b.one("leaf", errs).and_then(|n| int_value(n, errs));
    b.finish(&["number", "index", "leaf"], errs);
    Some(Level {
        name: name?,
        docs: node.docs.clone(),
        number: number?,
        index: index?,
        leaf,
    })
}

fn flag(node: &Node, errs: &mut Errors) -> Option<Flag> {
    let name = name_arg(node, errs, "R = 0;");
    let Body::Value(v) = &node.body else {
        errs.error(
            node.span(),
            "a single-bit flag is written `bit NAME = position;`",
        );
        return None;
    };
    let span = first_span(v);
    let bit = single_token(v).as_ref().and_then(lit_int);
    if bit.is_none() {
        errs.error(
            span,
            "a flag's position is an integer bit number, such as `bit R = 0;`",
        );
    }
    Some(Flag {
        name: name?,
        docs: node.docs.clone(),
        bit: Spanned { value: bit?, span },
    })
}

fn field(node: &Node, errs: &mut Errors) -> Option<Field> {
    let name = name_arg(node, errs, "memtype { ... }");
    let (nodes, span) = block_of(node, errs)?;
    let mut b = Block::new(nodes, "a `field`", span);
    let bits = b
        .required("bits", "bits = 5:3;", errs)
        .and_then(|n| bits_value(n, errs));
    let ty = b
        .required("type", "type = EptMemoryType;", errs)
        .and_then(|n| ident_value(n, errs));
    let values = b.required("values", "values { WB = 6; }", errs);
    b.finish(&["bits", "type", "values"], errs);
    let (vnodes, vspan) = block_of(values?, errs)?;
    let mut variants = Vec::new();
    for v in vnodes {
        no_args(v, errs);
        if let Some(value) = int_value(v, errs) {
            variants.push(Variant {
                name: v.key.clone(),
                docs: v.docs.clone(),
                value,
            });
        }
    }
    if variants.is_empty() {
        errs.error(
            vspan,
            "a field needs at least one value: `values { NAME = encoding; }`",
        );
    }
    Some(Field {
        name: name?,
        docs: node.docs.clone(),
        bits: bits?,
        ty: ty?,
        variants,
    })
}

fn output_address(node: &Node, errs: &mut Errors) -> Option<OutputAddress> {
    no_args(node, errs);
    let (nodes, span) = block_of(node, errs)?;
    let mut b = Block::new(nodes, "`output_address`", span);
    let bits = b
        .required("bits", "bits = 51:12;", errs)
        .and_then(|n| bits_value(n, errs));
    let pa_low_bit = b
        .required("pa_low_bit", "pa_low_bit = 12;", errs)
        .and_then(|n| int_value(n, errs));
    b.finish(&["bits", "pa_low_bit"], errs);
    Some(OutputAddress {
        bits: bits?,
        pa_low_bit: pa_low_bit?,
    })
}

fn kind(node: &Node, errs: &mut Errors) -> Option<Kind> {
    no_args(node, errs);
    let (nodes, span) = block_of(node, errs)?;
    let mut b = Block::new(nodes, "a descriptor kind", span);
    let is = b
        .required("is", "is = all(PS);", errs)
        .and_then(|n| pred_value(n, errs));
    let set = b.required("set", "set = [R, W, X];", errs).and_then(|n| {
        let v = value_of(n, errs, "[A, B]")?;
        let mut out = Vec::new();
        for item in list_items(v, errs, "set")? {
            out.extend(assigns(&item, errs)?);
        }
        Some(out)
    });
    b.finish(&["is", "set"], errs);
    Some(Kind {
        is: is?,
        set: set?,
        span: node.span(),
    })
}

fn descriptors(node: &Node, errs: &mut Errors) -> Option<Descriptors> {
    no_args(node, errs);
    let (nodes, span) = block_of(node, errs)?;
    let mut b = Block::new(nodes, "`descriptors`", span);
    let cite = opt_cite(&mut b, errs);
    let present = b
        .required("present", "present = all(V);", errs)
        .and_then(|n| pred_value(n, errs));
    let table = b
        .required("table", "table { is = ...; set = [...]; }", errs)
        .and_then(|n| kind(n, errs));
    let block = b.one("block", errs).map(|n| kind(n, errs));
    let page = b
        .required("page", "page { is = ...; set = [...]; }", errs)
        .and_then(|n| kind(n, errs));
    let reserved: Vec<Reserved> = b
        .all("reserved")
        .into_iter()
        .filter_map(|n| reserved(n, errs))
        .collect();
    let break_before_make = match b.one("break_before_make", errs) {
        Some(n) => value_of(n, errs, "[memattr, sh]")
            .and_then(|v| list_items(v, errs, "break_before_make"))
            .map(|items| {
                items
                    .iter()
                    .filter_map(|i| match single_token(i) {
                        Some(TokenTree::Ident(id)) => Some(id),
                        _ => {
                            errs.error(first_span(i), "expected a flag or field name");
                            None
                        }
                    })
                    .collect()
            })
            .unwrap_or_default(),
        None => Vec::new(),
    };
    b.finish(
        &[
            "cite",
            "present",
            "table",
            "block",
            "page",
            "reserved",
            "break_before_make",
        ],
        errs,
    );
    let block = match block {
        Some(k) => Some(k?),
        None => None,
    };
    Some(Descriptors {
        cite,
        present: present?,
        table: table?,
        block,
        page: page?,
        reserved,
        break_before_make,
    })
}

fn reserved(node: &Node, errs: &mut Errors) -> Option<Reserved> {
    let name = name_arg(
        node,
        errs,
        "write_without_read { when = [all(W), none(R)]; reason = \"...\"; }",
    );
    let (nodes, span) = block_of(node, errs)?;
    let mut b = Block::new(nodes, "a `reserved` encoding", span);
    let when = b
        .required("when", "when = [all(W), none(R)];", errs)
        .and_then(|n| value_of(n, errs, "[all(W), none(R)]"))
        .and_then(|v| list_items(v, errs, "when"))
        .and_then(|items| {
            items
                .iter()
                .map(|i| pred_tokens(i, errs))
                .collect::<Option<Vec<_>>>()
        });
    let reason = b
        .required("reason", "reason = \"...\";", errs)
        .and_then(|n| str_value(n, errs));
    b.finish(&["when", "reason"], errs);
    Some(Reserved {
        name: name?,
        when: when?,
        reason: reason?,
    })
}

fn permissions(node: &Node, errs: &mut Errors) -> Option<Permissions> {
    no_args(node, errs);
    let (nodes, span) = block_of(node, errs)?;
    let mut b = Block::new(nodes, "`permissions`", span);
    let cite = opt_cite(&mut b, errs);
    let ignore = match b.one("ignore", errs) {
        Some(n) => value_of(n, errs, "[USER]")
            .and_then(|v| mflag_list(v, errs, "ignore", false))
            .map(|l| l.into_iter().map(|(f, _)| f).collect())
            .unwrap_or_default(),
        None => Vec::new(),
    };
    let map_nodes = b.all("map");
    let mappings: Vec<Mapping> = map_nodes.iter().filter_map(|n| mapping(n, errs)).collect();
    let forbid_nodes = b.all("forbid");
    let forbids: Vec<Forbid> = forbid_nodes
        .iter()
        .filter_map(|n| forbid(n, errs))
        .collect();
    let incomplete = mappings.len() != map_nodes.len() || forbids.len() != forbid_nodes.len();
    b.finish(&["cite", "ignore", "map", "forbid"], errs);
    Some(Permissions {
        incomplete,
        cite,
        ignore,
        mappings,
        forbids,
    })
}

/// `map READ = R;` (one flag to one bit) or
/// `map [READ, WRITE] { when [] = s2ap: NoAccess; ... }`.
fn mapping(node: &Node, errs: &mut Errors) -> Option<Mapping> {
    let head: TokenStream = node.args.iter().cloned().collect();
    let span = node.span();
    match &node.body {
        Body::Value(v) => {
            let (f, pos) = mflag(&head, errs)?;
            if !pos {
                errs.error(f.span, "`!` is not allowed in a `map` head");
                return None;
            }
            let assigns = assigns(v, errs)?;
            Some(Mapping {
                governs: vec![f],
                rows: vec![
                    Row {
                        flags: vec![],
                        assigns: vec![],
                        span,
                    },
                    Row {
                        flags: vec![f],
                        assigns,
                        span: first_span(v),
                    },
                ],
            })
        }
        Body::Block(nodes, _) => {
            let governs: Vec<Spanned<MFlag>> = mflag_list(&head, errs, "map", false)?
                .into_iter()
                .map(|(f, _)| f)
                .collect();
            let mut rows = Vec::new();
            for n in nodes {
                if n.key != "when" {
                    errs.error(
                        n.span(),
                        "a `map` block holds rows written `when [FLAGS] = encoding;`",
                    );
                    continue;
                }
                let args: TokenStream = n.args.iter().cloned().collect();
                let Body::Value(v) = &n.body else {
                    errs.error(n.span(), "a row is written `when [FLAGS] = encoding;`");
                    continue;
                };
                let Some(flags) = mflag_list(&args, errs, "when", false) else {
                    continue;
                };
                let Some(assigns) = assigns(v, errs) else {
                    continue;
                };
                rows.push(Row {
                    flags: flags.into_iter().map(|(f, _)| f).collect(),
                    assigns,
                    span: n.span(),
                });
            }
            Some(Mapping { governs, rows })
        }
        Body::Empty => {
            errs.error(
                span,
                "write `map FLAG = BIT;` or `map [FLAGS] { when [...] = ...; }`",
            );
            None
        }
    }
}

fn forbid(node: &Node, errs: &mut Errors) -> Option<Forbid> {
    let name = name_arg(node, errs, "write_without_read { ... }");
    let (nodes, span) = block_of(node, errs)?;
    let mut b = Block::new(nodes, "a `forbid`", span);
    let flags = b
        .required("flags", "flags = [WRITE, !READ];", errs)
        .and_then(|n| value_of(n, errs, "[WRITE, !READ]"))
        .and_then(|v| mflag_list(v, errs, "flags", true));
    let reason = b
        .required("reason", "reason = \"...\";", errs)
        .and_then(|n| str_value(n, errs));
    let unless = b.one("unless", errs).and_then(|n| ident_value(n, errs));
    b.finish(&["flags", "reason", "unless"], errs);
    Some(Forbid {
        name: name?,
        flags: flags?,
        reason: reason?,
        unless,
    })
}

fn param(node: &Node, errs: &mut Errors) -> Option<Param> {
    let name = name_arg(node, errs, "vmid { width = 8; }");
    let (nodes, span) = block_of(node, errs)?;
    let mut b = Block::new(nodes, "a `param`", span);
    let width = b
        .required("width", "width = 8;", errs)
        .and_then(|n| int_value(n, errs));
    let default = b.one("default", errs).and_then(|n| int_value(n, errs));
    b.finish(&["width", "default"], errs);
    Some(Param {
        name: name?,
        docs: node.docs.clone(),
        width: width?,
        default,
    })
}

fn register(node: &Node, errs: &mut Errors) -> Option<Register> {
    let name = name_arg(node, errs, "EPTP { ... }");
    let (nodes, span) = block_of(node, errs)?;
    let mut b = Block::new(nodes, "a `register`", span);
    let cite = opt_cite(&mut b, errs);
    let root = b
        .one("root", errs)
        .and_then(|n| bool_value(n, errs))
        .map(|b| b.value)
        .unwrap_or(false);
    let fields: Vec<RegField> = b
        .all("field")
        .into_iter()
        .filter_map(|n| reg_field(n, errs))
        .collect();
    b.finish(&["cite", "root", "field"], errs);
    Some(Register {
        name: name?,
        docs: node.docs.clone(),
        cite,
        root,
        fields,
    })
}

fn reg_field(node: &Node, errs: &mut Errors) -> Option<RegField> {
    let name = name_arg(node, errs, "t0sz { bits = 5:0; value = 64 - input_bits; }");
    let (nodes, span) = block_of(node, errs)?;
    let mut b = Block::new(nodes, "a register `field`", span);
    let bits = b
        .required("bits", "bits = 5:0;", errs)
        .and_then(|n| bits_value(n, errs));
    let value = b
        .required("value", "value = 64 - input_bits;", errs)
        .and_then(|n| value_of(n, errs, "an expression"))
        .and_then(|v| match syn::parse2::<syn::Expr>(v.clone()) {
            Ok(e) => Expr::from_syn(&e, errs),
            Err(e) => {
                errs.push(e);
                None
            }
        });
    b.finish(&["bits", "value"], errs);
    Some(RegField {
        name: name?,
        docs: node.docs.clone(),
        bits: bits?,
        value: value?,
    })
}

fn require(node: &Node, errs: &mut Errors) -> Option<Require> {
    let name = name_arg(
        node,
        errs,
        "require ipa_fits { when = input_bits <= pa_bits; reason = \"...\"; }",
    );
    let (nodes, span) = block_of(node, errs)?;
    let mut b = Block::new(nodes, "a `require`", span);
    let cite = opt_cite(&mut b, errs);
    let when = b
        .required("when", "when = input_bits <= pa_bits;", errs)
        .and_then(|n| value_of(n, errs, "an expression"))
        .and_then(|v| match syn::parse2::<syn::Expr>(v.clone()) {
            Ok(e) => Expr::from_syn(&e, errs),
            Err(e) => {
                errs.push(e);
                None
            }
        });
    let reason = b
        .required("reason", "reason = \"<why, in the manual's terms>\";", errs)
        .and_then(|n| str_value(n, errs));
    b.finish(&["cite", "when", "reason"], errs);
    Some(Require {
        name: name?,
        cite,
        when: when?,
        reason: reason?,
    })
}

fn flush(node: &Node, errs: &mut Errors) -> Option<Flush> {
    no_args(node, errs);
    let (nodes, span) = block_of(node, errs)?;
    let mut b = Block::new(nodes, "`flush`", span);
    let cite = opt_cite(&mut b, errs);
    let on_map = b
        .required("invalidate_on_map", "invalidate_on_map = false;", errs)
        .and_then(|n| bool_value(n, errs));
    let covers = b
        .required("page_covers_tables", "page_covers_tables = false;", errs)
        .and_then(|n| bool_value(n, errs));
    let page_limit = b.one("page_limit", errs).and_then(|n| int_value(n, errs));
    let split_bbm = b
        .one("split_break_before_make", errs)
        .and_then(|n| bool_value(n, errs));
    let fault_invalidates = b
        .one("fault_invalidates", errs)
        .and_then(|n| bool_value(n, errs));
    let page = b
        .required(
            "page",
            "page { before = [...]; each = [...]; after = [...]; }",
            errs,
        )
        .and_then(|n| recipe(n, errs));
    let context = b
        .required("context", "context { after = [...]; }", errs)
        .and_then(|n| recipe(n, errs));
    let all = b
        .required("all", "all { after = [...]; }", errs)
        .and_then(|n| recipe(n, errs));
    b.finish(
        &[
            "cite",
            "invalidate_on_map",
            "page_covers_tables",
            "page_limit",
            "split_break_before_make",
            "fault_invalidates",
            "page",
            "context",
            "all",
        ],
        errs,
    );
    Some(Flush {
        cite,
        invalidate_on_map: on_map?,
        page_covers_tables: covers?,
        page_limit,
        split_break_before_make: split_bbm,
        fault_invalidates,
        page: page?,
        context: context?,
        all: all?,
    })
}

fn recipe(node: &Node, errs: &mut Errors) -> Option<Recipe> {
    no_args(node, errs);
    let (nodes, span) = block_of(node, errs)?;
    let mut b = Block::new(nodes, "a flush recipe", span);
    let current = b.one("current", errs).and_then(|n| ident_value(n, errs));
    let steps = |key: &str, b: &mut Block, errs: &mut Errors| -> Vec<Step> {
        let Some(n) = b.one(key, errs) else {
            return Vec::new();
        };
        let Some(v) = value_of(n, errs, "[dsb_ish, isb]") else {
            return Vec::new();
        };
        let Some(items) = list_items(v, errs, key) else {
            return Vec::new();
        };
        items.iter().filter_map(|i| step(i, errs)).collect()
    };
    let clear = match b.one("clear", errs) {
        None => Vec::new(),
        Some(n) => value_of(n, errs, "[HCR_EL2_TGE]")
            .and_then(|v| list_items(v, errs, "clear"))
            .map(|items| {
                items
                    .iter()
                    .filter_map(
                        |i| match i.clone().into_iter().collect::<Vec<_>>().as_slice() {
                            [TokenTree::Ident(id)] => Some(id.clone()),
                            _ => {
                                errs.error(
                                    first_span(i),
                                    "`clear` lists register bits by name, `clear = [HCR_EL2_TGE];`",
                                );
                                None
                            }
                        },
                    )
                    .collect()
            })
            .unwrap_or_default(),
    };
    let before = steps("before", &mut b, errs);
    let each = steps("each", &mut b, errs);
    let after = steps("after", &mut b, errs);
    b.finish(&["current", "clear", "before", "each", "after"], errs);
    Some(Recipe {
        current,
        clear,
        before,
        each,
        after,
    })
}

fn step(ts: &TokenStream, errs: &mut Errors) -> Option<Step> {
    let toks: Vec<TokenTree> = ts.clone().into_iter().collect();
    match toks.as_slice() {
        [TokenTree::Ident(instr)] => Some(Step {
            instr: instr.clone(),
            operands: vec![],
        }),
        [TokenTree::Ident(instr), TokenTree::Group(g)]
            if g.delimiter() == proc_macro2::Delimiter::Parenthesis =>
        {
            let mut operands = Vec::new();
            for op in split_commas(g.stream()) {
                operands.push(operand(&op, errs)?);
            }
            Some(Step {
                instr: instr.clone(),
                operands,
            })
        }
        _ => {
            errs.error(first_span(ts), "a flush step is an instruction name with optional operands, `tlbi_ipas2e1is(gpa >> 12)`");
            None
        }
    }
}

fn operand(ts: &TokenStream, errs: &mut Errors) -> Option<Operand> {
    let toks: Vec<TokenTree> = ts.clone().into_iter().collect();
    let span = first_span(ts);
    match toks.as_slice() {
        [t] if lit_int(t) == Some(0) => Some(Operand::Zero),
        [TokenTree::Ident(id)] if id == "gpa" => Some(Operand::Gpa(0, span)),
        [TokenTree::Ident(id)] => Some(Operand::Name(id.clone())),
        [TokenTree::Ident(id), TokenTree::Punct(a), TokenTree::Punct(b), n]
            if id == "gpa" && a.as_char() == '>' && b.as_char() == '>' =>
        {
            match lit_int(n) {
                Some(s) if s < 64 => Some(Operand::Gpa(s as u32, span)),
                _ => {
                    errs.error(n.span(), "shift amount must be an integer below 64");
                    None
                }
            }
        }
        _ => {
            errs.error(
                span,
                "an operand is `0`, `gpa`, `gpa >> N`, a `param` name or a `register` name",
            );
            None
        }
    }
}
