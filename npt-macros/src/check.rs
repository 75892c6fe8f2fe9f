//! Stage 3: rules over the typed model, one function per rule, each stating
//! the rule it enforces. Every rule runs; every violation is reported.

use crate::encode::{combo_name, governed_bits, row_bits, Illegal};
use crate::errors::Errors;
use crate::eval::Env;
use crate::model::{Assign, BitRange, Format, Kind, MFlag, Operand, Pred, Recipe};
use crate::vocab;
use proc_macro2::Span;
use std::collections::HashMap;

pub fn run(f: &Format, errs: &mut Errors) {
    let before = errs.count();
    check_format(f, errs);
    let base_clean = errs.count() == before;
    check_variant_entries(f, errs);
    for v in &f.variants {
        let vf = f.variant(v);
        if base_clean {
            // Every rule again, on the base with the variant's parts in:
            // only what the variant changed can fail now.
            check_format_of(&vf, Some(&v.name), errs);
        } else {
            check_geometry(&vf, errs);
            check_registers(&vf, errs);
            check_requires_of(&vf, Some(&v.name), errs);
        }
    }
}

/// A variant that changes how an entry encodes or decodes (its output
/// address, descriptors or permissions) names an entry type of its own:
/// the base's type would read and build its entries by the base's rules
/// (its `output_address()`, its `GenericPTE`). Entry type names are unique.
fn check_variant_entries(f: &Format, errs: &mut Errors) {
    // (entry name, the variant that named it): variants may share an entry
    // type when they encode alike (the same output address field, neither
    // changing descriptors or permissions).
    let mut seen: Vec<(&syn::Ident, Option<&crate::model::FormatVariant>)> = vec![(&f.entry, None)];
    let same_encoding = |a: &crate::model::FormatVariant, b: &crate::model::FormatVariant| {
        let addr = |v: &crate::model::FormatVariant| {
            v.address
                .as_ref()
                .map(|x| (x.bits.hi, x.bits.lo, x.pa_low_bit.value))
        };
        a.descriptors.is_none()
            && b.descriptors.is_none()
            && a.permissions.is_none()
            && b.permissions.is_none()
            && addr(a) == addr(b)
    };
    for v in &f.variants {
        let changes = [
            ("output_address", v.address.is_some()),
            ("descriptors", v.descriptors.is_some()),
            ("permissions", v.permissions.is_some()),
        ];
        match &v.entry {
            None => {
                if let Some((what, _)) = changes.iter().find(|(_, c)| *c) {
                    errs.error(
                        v.name.span(),
                        format!(
                            "variant `{}` changes how its entries encode (`{what}`), so they need a type of their own: add `entry = {}Entry;` to the variant",
                            v.name, v.name
                        ),
                    );
                }
            }
            Some(e) => {
                if let Some((first, by)) = seen.iter().find(|(x, _)| *x == e) {
                    if !by.is_some_and(|w| same_encoding(w, v)) {
                        errs.conflict(
                            e.span(),
                            format!("entry type `{e}` is already another format's, which encodes differently; give the variant its own name (variants may share one only with the same `output_address` and neither changing `descriptors` or `permissions`)"),
                            first.span(),
                            "first named here",
                        );
                    }
                }
                seen.push((e, Some(v)));
            }
        }
    }
}

fn check_geometry(f: &Format, errs: &mut Errors) {
    check_granule(f, errs);
    check_levels(f, errs);
    check_root_table(f, errs);
    check_output_address(f, None, errs);
    check_block_kind(f, errs);
    check_legal_combos_are_leaves(f, errs);
}

fn check_format(f: &Format, errs: &mut Errors) {
    check_format_of(f, None, errs);
}

/// Every rule; `variant` names the variant `f` is, for the messages of
/// rules written once in the base (`require`).
fn check_format_of(f: &Format, variant: Option<&syn::Ident>, errs: &mut Errors) {
    check_bit_ranges(f, errs);
    check_entry_overlaps(f, errs);
    check_unique_names(f, errs);
    check_field_values(f, errs);
    check_granule(f, errs);
    check_levels(f, errs);
    check_root_table(f, errs);
    check_output_address(f, variant, errs);
    check_descriptor_names(f, errs);
    check_block_kind(f, errs);
    check_mapping_coverage(f, errs);
    check_mapping_rows(f, errs);
    check_every_combo_has_a_row(f, errs);
    check_legal_combos_are_leaves(f, errs);
    check_forbid_unless(f, errs);
    check_params(f, errs);
    check_registers(f, errs);
    check_flush(f, errs);
    check_dirty_log_bit(f, errs);
    check_hardware_dirty(f, errs);
    check_requires_of(f, variant, errs);
}

fn range_ok(r: &BitRange, limit: u32, what: &str, errs: &mut Errors) -> bool {
    if r.lo > r.hi {
        errs.error(
            r.span,
            format!(
                "{what}: the range is reversed; write the high bit first, `{}:{}`",
                r.lo, r.hi
            ),
        );
        return false;
    }
    if r.hi >= limit {
        errs.error(
            r.span,
            format!(
                "{what}: bit {} is outside the {limit}-bit {}",
                r.hi,
                if limit == 64 { "word" } else { "address" }
            ),
        );
        return false;
    }
    true
}

/// Every flag, field and the output address lies inside the 64-bit entry,
/// and ranges are written high bit first.
fn check_bit_ranges(f: &Format, errs: &mut Errors) {
    for flag in &f.bits {
        if flag.bit.value >= 64 {
            errs.error(
                flag.bit.span,
                format!(
                    "flag `{}` at bit {} is outside the 64-bit entry",
                    flag.name, flag.bit.value
                ),
            );
        }
    }
    for field in &f.fields {
        range_ok(&field.bits, 64, &format!("field `{}`", field.name), errs);
    }
    range_ok(&f.address.bits, 64, "the output address", errs);
}

/// No two items of the entry share a bit (bitbybit's mask accumulator).
fn check_entry_overlaps(f: &Format, errs: &mut Errors) {
    let mut items: Vec<(String, u64, Span)> = Vec::new();
    for flag in &f.bits {
        if flag.bit.value < 64 {
            items.push((
                format!("flag `{}`", flag.name),
                1 << flag.bit.value,
                flag.name.span(),
            ));
        }
    }
    for field in &f.fields {
        if field.bits.lo <= field.bits.hi && field.bits.hi < 64 {
            items.push((
                format!("field `{}`", field.name),
                field.bits.mask(),
                field.name.span(),
            ));
        }
    }
    let a = &f.address.bits;
    if a.lo <= a.hi && a.hi < 64 {
        items.push(("the output address".to_string(), a.mask(), a.span));
    }
    for (i, (name, mask, span)) in items.iter().enumerate() {
        if let Some((first, first_mask, fspan)) = items[..i].iter().find(|(_, m, _)| m & mask != 0)
        {
            errs.conflict(
                *span,
                format!(
                    "{name} overlaps {first} (shared bits {:#x}); give each its own bits",
                    mask & first_mask
                ),
                *fspan,
                format!("{first} defined here"),
            );
        }
    }
}

/// Names are unique: flags and fields share the entry's namespace; each
/// field's variants are unique; levels are unique.
fn check_unique_names(f: &Format, errs: &mut Errors) {
    let mut seen: HashMap<String, Span> = HashMap::new();
    let names = f
        .bits
        .iter()
        .map(|b| &b.name)
        .chain(f.fields.iter().map(|x| &x.name));
    for n in names {
        if let Some(first) = seen.insert(n.to_string(), n.span()) {
            errs.conflict(
                n.span(),
                format!("`{n}` is defined twice; rename one"),
                first,
                "first defined here",
            );
        }
    }
    let mut levels: HashMap<String, Span> = HashMap::new();
    for l in &f.geometry.levels {
        if let Some(first) = levels.insert(l.name.to_string(), l.name.span()) {
            errs.conflict(
                l.name.span(),
                format!("level `{}` is defined twice", l.name),
                first,
                "first defined here",
            );
        }
    }
}

/// Every enum value fits its field, and no two variants share an encoding.
fn check_field_values(f: &Format, errs: &mut Errors) {
    for field in &f.fields {
        if field.bits.lo > field.bits.hi || field.bits.hi >= 64 {
            continue;
        }
        let width = field.bits.width();
        let mut seen: HashMap<u64, &syn::Ident> = HashMap::new();
        let mut names: HashMap<String, Span> = HashMap::new();
        for v in &field.variants {
            if width < 64 && v.value.value >> width != 0 {
                errs.error(
                    v.value.span,
                    format!(
                        "{} does not fit in the {width}-bit field `{}` (bits {}:{})",
                        v.value.value, field.name, field.bits.hi, field.bits.lo
                    ),
                );
            }
            if let Some(first) = seen.insert(v.value.value, &v.name) {
                errs.conflict(v.name.span(), format!("`{}` has the same encoding ({}) as `{first}`; each value needs its own encoding", v.name, v.value.value), first.span(), format!("`{first}` defined here"));
            }
            if let Some(first) = names.insert(v.name.to_string(), v.name.span()) {
                errs.conflict(
                    v.name.span(),
                    format!("value `{}` is defined twice", v.name),
                    first,
                    "first defined here",
                );
            }
        }
    }
}

/// The translation granule is 4, 16 or 64 KiB (Arm ARM D8.1; x86 and RISC-V
/// use 4 KiB).
fn check_granule(f: &Format, errs: &mut Errors) {
    let g = f.geometry.granule;
    if ![4 << 10, 16 << 10, 64 << 10].contains(&g.value) {
        errs.error(
            g.span,
            format!(
                "granule {} is not a translation granule; use 4K, 16K or 64K",
                g.value
            ),
        );
    }
}

/// log2 of the granule, or `None` if it is not a valid granule (reported
/// once by `check_granule`; rules that depend on it stay quiet).
fn granule_shift(f: &Format) -> Option<u32> {
    let g = f.geometry.granule.value;
    [4 << 10, 16 << 10, 64 << 10]
        .contains(&g)
        .then(|| g.trailing_zeros())
}

/// Levels run from the root down; their index ranges are contiguous, cover
/// the input address from its top bit down to the page offset, and below the
/// root each level indexes exactly one granule-sized table. A leaf level's
/// page size is the size its index range implies; the last level holds
/// leaves. At most five levels (x86 5-level EPT, Arm LPA2, Sv57x4).
fn check_levels(f: &Format, errs: &mut Errors) {
    let g = &f.geometry;
    let Some(shift) = granule_shift(f) else {
        return;
    };
    if g.levels.len() > 5 {
        errs.error(
            g.levels[5].name.span(),
            "more than five levels: no supported architecture walks deeper",
        );
    }
    if g.input_bits.value > 64 || g.input_bits.value <= shift as u64 {
        errs.error(
            g.input_bits.span,
            format!("input_bits must be between {} and 64", shift + 1),
        );
        return;
    }
    let mut expect_hi = g.input_bits.value as u32 - 1;
    let per_table_bits = shift - 3; // 8-byte descriptors
    for (i, l) in g.levels.iter().enumerate() {
        let r = &l.index;
        if !range_ok(r, 64, &format!("level `{}`", l.name), errs) {
            return;
        }
        if r.hi != expect_hi {
            let msg = if i == 0 {
                format!("the root level must index from the top input bit: expected {expect_hi}:.. for input_bits = {}", g.input_bits.value)
            } else {
                format!("level ranges must be contiguous: expected this level to start at bit {expect_hi}, right below `{}`", g.levels[i - 1].name)
            };
            errs.error(r.span, msg);
        }
        if i > 0 && r.width() != per_table_bits {
            errs.error(r.span, format!("below the root each level indexes one {}-byte table of 8-byte entries: {per_table_bits} index bits, not {}", g.granule.value, r.width()));
        }
        if let Some(leaf) = l.leaf {
            let implied = 1u64.checked_shl(r.lo).unwrap_or(0);
            if leaf.value != implied {
                errs.error(leaf.span, format!("a leaf at level `{}` maps {implied:#x} bytes (its index starts at bit {}), not {:#x}", l.name, r.lo, leaf.value));
            }
        }
        expect_hi = r.lo.wrapping_sub(1);
    }
    if let Some(last) = g.levels.last() {
        if last.index.lo != shift {
            errs.error(
                last.index.span,
                format!("the last level must end right above the page offset, at bit {shift}"),
            );
        }
        if last.leaf.is_none() {
            errs.error(
                last.name.span(),
                format!(
                    "the last level `{}` must hold leaves: add `leaf = {}K;`",
                    last.name,
                    f.geometry.granule.value >> 10
                ),
            );
        }
    }
    let mut numbers: HashMap<u64, Span> = HashMap::new();
    for l in &g.levels {
        if let Some(first) = numbers.insert(l.number.value, l.number.span) {
            errs.conflict(
                l.number.span,
                "two levels share a number",
                first,
                "first used here",
            );
        }
    }
}

/// The root is `tables` granule-sized tables, together indexed by the root
/// level's bits (concatenated roots: Arm ARM D8.2.? "concatenated
/// translation tables"; RISC-V Sv39x4's 16 KiB root), aligned to at least
/// its own size.
fn check_root_table(f: &Format, errs: &mut Errors) {
    let g = &f.geometry;
    let (Some(shift), Some(root)) = (granule_shift(f), g.levels.first()) else {
        return;
    };
    if root.index.lo > root.index.hi || root.index.hi >= 64 {
        return;
    }
    let entries_per_table = 1u64 << (shift - 3);
    let needed = (1u64 << root.index.width()).div_ceil(entries_per_table);
    if g.root_tables.value != needed {
        errs.error(g.root_tables.span, format!("the root level indexes {} bits ({} entries), which takes {needed} table(s) of {} bytes, not {}", root.index.width(), 1u64 << root.index.width(), g.granule.value, g.root_tables.value));
    }
    let size = g.root_tables.value * g.granule.value;
    let align = g.root_align.value;
    if !align.is_power_of_two() || align < size {
        errs.error(g.root_align.span, format!("the root table ({size} bytes) must be aligned to a power of two of at least its size"));
    }
}

/// The output-address field can hold every address of the output width, and
/// its lowest bit stands for the granule's page offset.
fn check_output_address(f: &Format, variant: Option<&syn::Ident>, errs: &mut Errors) {
    let a = &f.address;
    if a.bits.lo > a.bits.hi {
        return;
    }
    let Some(shift) = granule_shift(f) else {
        return;
    };
    if a.pa_low_bit.value != shift as u64 {
        let msg = format!("the output address field's lowest bit holds PA bit {shift} (the granule's page offset)");
        match variant {
            Some(v) => errs.conflict(
                a.pa_low_bit.span,
                format!("{msg} in variant `{v}`, whose granule differs from the base's: give the variant its own `output_address {{ ... pa_low_bit = {shift}; }}` (and `entry`)"),
                v.span(),
                format!("variant `{v}` declared here"),
            ),
            None => errs.error(a.pa_low_bit.span, msg),
        }
    }
    let top = a.pa_low_bit.value + a.bits.width() as u64;
    let ob = f.geometry.output_bits;
    if ob.value > top {
        errs.error(ob.span, format!("output_bits = {} but the output address field (bits {}:{}) holds PA bits {}:{} only", ob.value, a.bits.hi, a.bits.lo, top - 1, a.pa_low_bit.value));
    } else if top > ob.value && ob.value > a.pa_low_bit.value {
        // A field wider than the output would accept addresses the
        // hardware does not have (or bits it reserves).
        let hi = a.bits.lo as u64 + (ob.value - a.pa_low_bit.value) - 1;
        errs.error(
            a.bits.span,
            format!(
                "the output address field (bits {}:{}) holds PA bits {}:{}, wider than output_bits = {}; write `bits = {hi}:{};`",
                a.bits.hi,
                a.bits.lo,
                top - 1,
                a.pa_low_bit.value,
                ob.value,
                a.bits.lo
            ),
        );
    }
    if ob.value > 64 || ob.value <= shift as u64 {
        errs.error(
            ob.span,
            "output_bits must be between the page offset and 64",
        );
    }
}

fn check_pred(f: &Format, p: &Pred, errs: &mut Errors) {
    if let Pred::Any(n) | Pred::All(n) | Pred::None(n) = p {
        for name in n {
            if f.flag_bit(&name.to_string()).is_none() {
                errs.error(name.span(), format!("`{name}` is not a single-bit flag of this format; declare it with `bit {name} = N;`"));
            }
        }
    }
}

fn check_assign(f: &Format, a: &Assign, errs: &mut Errors) {
    match a {
        Assign::Flag(name) => {
            if f.flag_bit(&name.to_string()).is_none() {
                let hint = if f.fields.iter().any(|x| x.name == *name) {
                    format!(" (`{name}` is a field: write `{name}: VALUE`)")
                } else {
                    String::new()
                };
                errs.error(
                    name.span(),
                    format!("`{name}` is not a single-bit flag of this format{hint}"),
                );
            }
        }
        Assign::Field(field, variant) => match f.fields.iter().find(|x| x.name == *field) {
            None => errs.error(
                field.span(),
                format!("`{field}` is not a field of this format"),
            ),
            Some(fd) => {
                if !fd.variants.iter().any(|v| v.name == *variant) {
                    let names: Vec<String> =
                        fd.variants.iter().map(|v| v.name.to_string()).collect();
                    errs.error(
                        variant.span(),
                        format!(
                            "`{variant}` is not a value of `{}`; expected one of {}",
                            fd.ty,
                            names.join(", ")
                        ),
                    );
                }
            }
        },
    }
}

/// Descriptor predicates and `set` lists name declared flags and values.
fn check_descriptor_names(f: &Format, errs: &mut Errors) {
    let d = &f.descriptors;
    check_pred(f, &d.present, errs);
    for name in &d.break_before_make {
        if f.name_mask(&name.to_string()).is_none() {
            errs.error(
                name.span(),
                format!("`{name}` is neither a flag nor a field of this format"),
            );
        }
    }
    for r in &d.reserved {
        for p in &r.when {
            check_pred(f, p, errs);
        }
    }
    let kinds: Vec<&Kind> = [Some(&d.table), d.block.as_ref(), Some(&d.page)]
        .into_iter()
        .flatten()
        .collect();
    for k in kinds {
        check_pred(f, &k.is, errs);
        for a in &k.set {
            check_assign(f, a, errs);
        }
    }
    for m in &f.permissions.mappings {
        for r in &m.rows {
            for a in &r.assigns {
                check_assign(f, a, errs);
            }
        }
    }
}

/// A `block` kind exists exactly when a level above the last holds leaves;
/// a built table descriptor is recognised as a present table (so the walker
/// reads back what the builder wrote; leaves are checked with their
/// attributes by `check_legal_combos_are_leaves`).
fn check_block_kind(f: &Format, errs: &mut Errors) {
    let levels = &f.geometry.levels;
    let upper_leaf = levels.iter().rev().skip(1).any(|l| l.leaf.is_some());
    let d = &f.descriptors;
    match (&d.block, upper_leaf) {
        (None, true) => errs.error(f.geometry.span, "a level above the last holds leaves, so `descriptors` needs a `block { is = ...; set = [...]; }` kind"),
        (Some(b), false) => errs.error(b.span, "no level above the last holds leaves: remove `block` or add `leaf = ...` to a level"),
        _ => {}
    }
    let Some((_, table_bits)) = f.assigns_bits(&d.table.set) else {
        return;
    };
    let check = |raw: u64| -> Option<bool> {
        let present = f.pred_holds(&d.present, raw)?;
        let table_match = f.pred_holds(&d.table.is, raw)?;
        let block_match = match &d.block {
            Some(b) => f.pred_holds(&b.is, raw)?,
            None => false,
        };
        Some(present && table_match && !block_match)
    };
    if check(table_bits) == Some(false) {
        errs.error(d.table.span, "a table descriptor built from `set` is not recognised as a present table by `present` and `is`");
    }
}

/// Every `MappingFlags` flag is governed by exactly one `map` or is listed in
/// `ignore`, so no flag a caller passes is silently dropped.
fn check_mapping_coverage(f: &Format, errs: &mut Errors) {
    let p = &f.permissions;
    if p.incomplete {
        return;
    }
    let mut owner: HashMap<MFlag, Span> = HashMap::new();
    let all = p
        .ignore
        .iter()
        .chain(p.mappings.iter().flat_map(|m| m.governs.iter()));
    for fl in all {
        if let Some(first) = owner.insert(fl.value, fl.span) {
            errs.conflict(fl.span, format!("{} is already governed elsewhere; each flag belongs to one `map` or to `ignore`", fl.value.name()), first, "first governed here");
        }
    }
    for m in MFlag::ALL {
        if !owner.contains_key(&m) {
            errs.error(
                f.name.span(),
                format!(
                    "`permissions` says nothing about {}: add it to a `map` or to `ignore = [...]`",
                    m.name()
                ),
            );
        }
    }
}

/// Rows name only governed flags, appear once, and decode unambiguously:
/// two rows of one map may not encode to the same bits.
fn check_mapping_rows(f: &Format, errs: &mut Errors) {
    for m in &f.permissions.mappings {
        let gov = governed_bits(m);
        let mut keys: HashMap<usize, Span> = HashMap::new();
        let mut encs: Vec<(u64, Span, usize)> = Vec::new();
        for r in &m.rows {
            for fl in &r.flags {
                if gov & fl.value.bit() == 0 {
                    errs.error(
                        fl.span,
                        format!(
                            "{} is not governed by this `map`; add it to the map's flag list",
                            fl.value.name()
                        ),
                    );
                }
            }
            let key = row_bits(&r.flags);
            if let Some(first) = keys.insert(key, r.span) {
                errs.conflict(
                    r.span,
                    format!("a second row for {}", combo_name(key)),
                    first,
                    "first row here",
                );
            }
            if let Some((_, v)) = f
                .assigns_bits(&r.assigns)
                .filter(|_| assigns_sound(f, &r.assigns))
            {
                if let Some((_, first, fk)) = encs.iter().find(|(e, _, _)| *e == v) {
                    errs.conflict(r.span, format!("this row encodes to the same bits as the row for {}; flags could not be read back", combo_name(*fk)), *first, "that row is here");
                }
                encs.push((v, r.span, key));
            }
        }
    }
}

/// Every combination no `forbid` refuses has a row in every `map` (else
/// it would be refused at run time with no reason the spec gave).
fn check_every_combo_has_a_row(f: &Format, errs: &mut Errors) {
    if f.permissions.incomplete {
        return;
    }
    for combo in 0..64usize {
        if combo & f.ignored_bits() != 0 || f.forbidding(combo).next().is_some() {
            continue;
        }
        if let Some(Err(Illegal::NoRow(i))) = f.encode_rows(combo) {
            let m = &f.permissions.mappings[i];
            // A row naming a flag the map does not govern is reported by
            // check_mapping_rows; its missing row follows from that.
            if m.rows
                .iter()
                .any(|r| row_bits(&r.flags) & !governed_bits(m) != 0)
            {
                return;
            }
            let key = combo & governed_bits(m);
            let span = m.governs.first().map_or(f.name.span(), |g| g.span);
            errs.error(
                span,
                format!(
                    "the combination {} has no row here (no `when {}`) and no `forbid` refuses it; add the row, or refuse it with {}",
                    combo_name(combo),
                    combo_name(key),
                    forbid_suggestion(f, combo)
                ),
            );
            return;
        }
    }
}

/// Whether every field value an assignment list uses fits its field and has
/// an encoding of its own (otherwise `check_field_values` reports it, and
/// comparing encodings would only repeat that).
fn assigns_sound(f: &Format, list: &[Assign]) -> bool {
    list.iter().all(|a| match a {
        Assign::Flag(_) => true,
        Assign::Field(field, _) => f.fields.iter().filter(|x| x.name == *field).all(|fd| {
            let w = fd.bits.width();
            let mut seen = std::collections::HashSet::new();
            fd.variants
                .iter()
                .all(|v| (w >= 64 || v.value.value >> w == 0) && seen.insert(v.value.value))
        }),
    })
}

/// Every combination the spec does not refuse builds a present leaf at
/// every leaf kind: a combination that would build an invalid or table
/// descriptor (RISC-V `V=1` with `R=W=X=0` is a pointer to a table; EPT
/// `R=W=X=0` is not present) must be listed under `forbid`.
fn check_legal_combos_are_leaves(f: &Format, errs: &mut Errors) {
    let d = &f.descriptors;
    let governed = f.permissions.ignore.iter().map(|s| s.value).chain(
        f.permissions
            .mappings
            .iter()
            .flat_map(|m| m.governs.iter().map(|s| s.value)),
    );
    let governed: std::collections::HashSet<MFlag> = governed.collect();
    if f.permissions.incomplete || governed.len() != MFlag::ALL.len() {
        return; // reported by check_mapping_coverage
    }
    let mut kinds: Vec<(&str, &Kind)> = vec![("page", &d.page)];
    if let Some(b) = &d.block {
        kinds.push(("block", b));
    }
    for combo in 0..64usize {
        if combo & f.ignored_bits() != 0 {
            continue;
        }
        // A combination a conditional `forbid` refuses is legal once its
        // param is set: it must build a present leaf too.
        let (attrs, lifted) = match f.encode_combo(combo) {
            Some(Ok((_, attrs))) => (attrs, None),
            Some(Err(Illegal::Forbidden(i))) => {
                let fb = &f.permissions.forbids[i];
                let Some(param) = &fb.unless else { continue };
                match f.encode_rows(combo) {
                    Some(Ok((_, attrs))) => (attrs, Some(fb)),
                    Some(Err(_)) => {
                        errs.error(
                            param.span(),
                            format!(
                                "the combination {} is refused by `forbid {}` only while `{param}` is 0, but the `map` rows give it no encoding; add the row, or drop `unless` to refuse it always",
                                combo_name(combo),
                                fb.name
                            ),
                        );
                        return;
                    }
                    None => continue,
                }
            }
            _ => continue,
        };
        let not_refused = match lifted {
            None => "is not refused".to_string(),
            Some(fb) => format!(
                "is allowed once `{}` is set (`forbid {}` has `unless`)",
                fb.unless
                    .as_ref()
                    .map(|u| u.to_string())
                    .unwrap_or_default(),
                fb.name
            ),
        };
        let fix = |f: &Format, combo| match lifted {
            None => format!(
                "refuse it under `permissions` with {}",
                forbid_suggestion(f, combo)
            ),
            Some(fb) => format!("drop `unless` from `forbid {}`", fb.name),
        };
        for (kname, k) in &kinds {
            let Some((set_mask, set_bits)) = f.assigns_bits(&k.set) else {
                return;
            };
            let raw = (attrs & !set_mask) | set_bits;
            let ok = f.pred_holds(&d.present, raw).zip(f.pred_holds(&k.is, raw));
            let table = if *kname == "block" {
                f.pred_holds(&d.table.is, raw) == Some(true)
                    && f.pred_holds(&k.is, raw) != Some(true)
            } else {
                false
            };
            let reserved = d
                .reserved
                .iter()
                .find(|r| r.when.iter().all(|p| f.pred_holds(p, raw) == Some(true)));
            if let Some(r) = reserved {
                errs.error(
                    r.name.span(),
                    format!(
                        "the combination {} {not_refused}, but its {kname} entry ({raw:#x}) is this reserved encoding ({}); {}",
                        combo_name(combo),
                        r.reason.value(),
                        fix(f, combo)
                    ),
                );
                return;
            }
            if let Some((present, is)) = ok {
                if !present || !is || table {
                    let what = if !present {
                        "`present` does not hold for it"
                    } else if table {
                        "`table.is` holds for it, so walks would read it as a table pointer"
                    } else {
                        "its kind's `is` does not hold for it"
                    };
                    errs.error(
                        k.span,
                        format!(
                            "the combination {} {not_refused}, but its {kname} entry ({raw:#x}) is not a present leaf ({what}); {}",
                            combo_name(combo),
                            fix(f, combo)
                        ),
                    );
                    return;
                }
            }
        }
    }
}

/// `forbid NAME { flags = [...]; ... }` naming exactly `combo` (absent
/// flags negated), for error messages.
fn forbid_suggestion(f: &Format, combo: usize) -> String {
    let flags: Vec<String> = MFlag::ALL
        .iter()
        .filter(|m| f.ignored_bits() & m.bit() == 0)
        .map(|m| {
            let bang = if combo & m.bit() == 0 { "!" } else { "" };
            format!("{bang}{}", m.name())
        })
        .collect();
    format!(
        "`forbid NAME {{ flags = [{}]; reason = \"...\"; }}`",
        flags.join(", ")
    )
}

/// `unless = NAME` names a param, and no combination is left to two
/// conditional `forbid`s (which param would lift it?).
fn check_forbid_unless(f: &Format, errs: &mut Errors) {
    let forbids = &f.permissions.forbids;
    for fb in forbids {
        let Some(u) = &fb.unless else { continue };
        if !f.params.iter().any(|p| p.name == *u) {
            let names: Vec<String> = f.params.iter().map(|p| format!("`{}`", p.name)).collect();
            errs.error(
                u.span(),
                format!(
                    "`unless = {u};` names no param (declared: {}); declare `param {u} {{ width = 1; }}` for the capability that lifts this refusal",
                    if names.is_empty() { "none".to_string() } else { names.join(", ") }
                ),
            );
        }
    }
    for combo in 0..64usize {
        if combo & f.ignored_bits() != 0 {
            continue;
        }
        let hits: Vec<usize> = f.forbidding(combo).collect();
        if let [a, b, ..] = hits[..] {
            let (fa, fb) = (&forbids[a], &forbids[b]);
            if fa.unless.is_some() && fb.unless.is_some() {
                errs.error(
                    fb.name.span(),
                    format!(
                        "the combination {} is refused by two conditional rules, `forbid {}` and `forbid {}`; which param lifts it is ambiguous: narrow one rule's `flags`",
                        combo_name(combo),
                        fa.name,
                        fb.name
                    ),
                );
                return;
            }
        }
    }
}

fn check_params(f: &Format, errs: &mut Errors) {
    let mut seen: HashMap<String, Span> = HashMap::new();
    for p in &f.params {
        if p.width.value == 0 || p.width.value > 64 {
            errs.error(p.width.span, "a param's width is between 1 and 64 bits");
        }
        // Expressions read the geometry's quantity under its name, not the
        // param, so a param may not take one.
        let builtin = p.name == "root_pa"
            || p.name == "gpa"
            || const_env(f).iter().any(|(q, _)| p.name == *q);
        if builtin {
            errs.error(
                p.name.span(),
                format!("`{}` is a built-in quantity; choose another name", p.name),
            );
        }
        if let Some(first) = seen.insert(p.name.to_string(), p.name.span()) {
            errs.conflict(
                p.name.span(),
                format!("param `{}` is defined twice", p.name),
                first,
                "first defined here",
            );
        }
        if let Some(d) = p.default {
            if p.width.value < 64 && d.value >> p.width.value != 0 {
                errs.error(
                    d.span,
                    format!(
                        "default {} does not fit the param's {} bits",
                        d.value, p.width.value
                    ),
                );
            }
        }
    }
    if let Some(limit) = &f.output_limit {
        match f.params.iter().find(|p| p.name == *limit) {
            None => errs.error(
                limit.span(),
                format!("`output_limit` names `{limit}`, which is not a `param`"),
            ),
            Some(p) => {
                let d = p.default.map_or(0, |d| d.value);
                if d > f.geometry.output_bits.value || d == 0 {
                    errs.error(
                        limit.span(),
                        format!(
                            "`{limit}` limits the output width, so its default must be between 1 and output_bits ({}): add `default = {};`",
                            f.geometry.output_bits.value, f.geometry.output_bits.value
                        ),
                    );
                }
            }
        }
    }
}

/// The geometry quantities a register value may use.
pub fn const_env(f: &Format) -> Vec<(&'static str, u64)> {
    let g = &f.geometry;
    vec![
        ("levels", g.levels.len() as u64),
        ("input_bits", g.input_bits.value),
        ("output_bits", g.output_bits.value),
        (
            "start_level",
            g.levels.first().map(|l| l.number.value).unwrap_or(0),
        ),
        ("granule_shift", g.granule.value.trailing_zeros() as u64),
        ("root_tables", g.root_tables.value),
        ("root_align", g.root_align.value),
        ("granule", g.granule.value),
        (
            "largest_leaf",
            g.levels
                .iter()
                .filter_map(|l| l.leaf.as_ref().map(|x| x.value))
                .max()
                .unwrap_or(0),
        ),
    ]
}

/// Exactly one register is the root register; register fields lie in the
/// 64-bit register and do not overlap; constant values fit their bits.
fn check_registers(f: &Format, errs: &mut Errors) {
    let roots: Vec<_> = f.registers.iter().filter(|r| r.root).collect();
    match roots.len() {
        0 => errs.error(f.name.span(), "no register is marked `root = true;`: declare the register that points the hardware at the table (EPTP, VTTBR_EL2, hgatp)"),
        1 => {}
        _ => errs.conflict(roots[1].name.span(), "two root registers", roots[0].name.span(), "first root register here"),
    }
    let root_pa = syn::Ident::new("root_pa", Span::call_site());
    let mut runtime: Vec<&syn::Ident> = vec![&root_pa];
    runtime.extend(f.params.iter().map(|p| &p.name));
    let env = Env {
        consts: const_env(f),
        runtime,
    };
    for r in &f.registers {
        let mut acc: Vec<(u64, &syn::Ident)> = Vec::new();
        for fd in &r.fields {
            if !range_ok(&fd.bits, 64, &format!("register field `{}`", fd.name), errs) {
                continue;
            }
            let mask = fd.bits.mask();
            if let Some((_, first)) = acc.iter().find(|(m, _)| m & mask != 0) {
                errs.conflict(
                    fd.name.span(),
                    format!("register field `{}` overlaps `{first}`", fd.name),
                    first.span(),
                    "overlapped field here",
                );
            }
            acc.push((mask, &fd.name));
            if let Some(crate::eval::Value::Const(v)) = fd.value.eval(&env, errs) {
                if fd.bits.width() < 64 && v >> fd.bits.width() != 0 {
                    errs.error(
                        fd.value.span(),
                        format!(
                            "value {v} does not fit in `{}` (bits {}:{})",
                            fd.name, fd.bits.hi, fd.bits.lo
                        ),
                    );
                }
            }
        }
    }
}

/// Recipes name known instructions with the right operand count, operands
/// name params or registers, and `current` names a context register the
/// runtime can switch.
fn check_flush(f: &Format, errs: &mut Errors) {
    for (scope, r) in [
        ("page", &f.flush.page),
        ("context", &f.flush.context),
        ("all", &f.flush.all),
    ] {
        check_recipe(f, scope, r, errs);
    }
    if let Some(limit) = &f.flush.page_limit {
        if limit.value == 0 || limit.value > 1 << 20 {
            errs.error(
                limit.span,
                format!(
                    "`page_limit = {}` is out of range: give the number of pages (1 to 1048576) a batch \
                     invalidates one by one before it invalidates the whole context, e.g. `page_limit = 512;`",
                    limit.value
                ),
            );
        }
    }
}

fn check_recipe(f: &Format, scope: &str, r: &Recipe, errs: &mut Errors) {
    let arch = f.arch.value;
    for bit in &r.clear {
        match vocab::clearable_bit(&bit.to_string()) {
            Some((_, a)) if a == arch => {}
            _ => {
                let known: Vec<&str> = vocab::CLEARABLE_BITS
                    .iter()
                    .filter(|(_, _, a)| *a == arch)
                    .map(|(n, _, _)| *n)
                    .collect();
                let msg = if known.is_empty() {
                    format!(
                        "`{bit}` cannot be cleared: {} has no register bits a recipe clears; remove `clear`",
                        arch.target_arch()
                    )
                } else {
                    format!(
                        "`{bit}` is not a register bit the runtime can clear for {}; known: {}",
                        arch.target_arch(),
                        known.join(", ")
                    )
                };
                errs.error(bit.span(), msg);
            }
        }
    }
    if let Some(cur) = &r.current {
        match vocab::context_register(&cur.to_string()) {
            None => {
                let known: Vec<&str> = vocab::CONTEXT_REGISTERS
                    .iter()
                    .map(|(n, _, _)| *n)
                    .collect();
                errs.error(
                    cur.span(),
                    format!(
                        "`{cur}` is not a context register the runtime can switch; known: {}",
                        known.join(", ")
                    ),
                );
            }
            Some((_, a)) if a != arch => {
                errs.error(
                    cur.span(),
                    format!(
                        "`{cur}` is an {} register, but this format's `arch` is {}",
                        a.target_arch(),
                        arch.target_arch()
                    ),
                );
            }
            Some(_) if !f.registers.iter().any(|x| x.name == *cur) => {
                errs.error(
                    cur.span(),
                    format!("`{cur}` must also be declared as a `register` so its value is known"),
                );
            }
            Some(_) => {}
        }
    }
    if r.before.is_empty() && r.each.is_empty() && r.after.is_empty() {
        errs.error(
            f.name.span(),
            format!("the `{scope}` flush recipe issues no instruction"),
        );
    }
    for step in r.before.iter().chain(&r.each).chain(&r.after) {
        match vocab::instruction(&step.instr.to_string()) {
            None => {
                let known: Vec<&str> = vocab::INSTRUCTIONS.iter().map(|i| i.name).collect();
                errs.error(
                    step.instr.span(),
                    format!(
                        "unknown instruction `{}`; known: {}",
                        step.instr,
                        known.join(", ")
                    ),
                );
            }
            Some(i) if i.operands != step.operands.len() => {
                errs.error(
                    step.instr.span(),
                    format!(
                        "`{}` takes {} operand(s), not {}",
                        step.instr,
                        i.operands,
                        step.operands.len()
                    ),
                );
            }
            Some(i) if i.arch != arch => {
                errs.error(
                    step.instr.span(),
                    format!(
                        "`{}` is an {} instruction, but this format's `arch` is {}",
                        step.instr,
                        i.arch.target_arch(),
                        arch.target_arch()
                    ),
                );
            }
            _ => {}
        }
        for op in &step.operands {
            if let Operand::Name(id) = op {
                if !f.params.iter().any(|p| p.name == *id)
                    && !f.registers.iter().any(|x| x.name == *id)
                {
                    errs.error(
                        id.span(),
                        format!("`{id}` is neither a `param` nor a `register` of this format"),
                    );
                }
            }
            if let Operand::Gpa(_, span) = op {
                if r.each.iter().all(|s| !std::ptr::eq(s, step)) {
                    errs.error(
                        *span,
                        "`gpa` is only defined in the `each` steps of a recipe",
                    );
                }
            }
        }
    }
    let slots = crate::codegen::slots(f);
    if slots.len() > 4 {
        errs.error(
            f.name.span(),
            format!(
                "flush recipes refer to {} values ({}); the runtime holds at most 4",
                slots.len(),
                slots.join(", ")
            ),
        );
    }
}

/// `dirty_log_bit` names one declared bit that no mapping, descriptor kind
/// or the address uses (the engine sets and clears it on live leaves).
fn check_dirty_log_bit(f: &Format, errs: &mut Errors) {
    let Some(name) = &f.dirty_log_bit else {
        return;
    };
    let Some(flag) = f.bits.iter().find(|b| b.name == *name) else {
        errs.error(
            name.span(),
            format!("`dirty_log_bit = {name};` names no `bit`; declare it, e.g. `bit {name} = 11;` (a bit the manual leaves to software)"),
        );
        return;
    };
    let mask = 1u64 << flag.bit.value;
    let used = f.mapping_bits() | f.predicate_bits() | f.kind_set_bits();
    if used & mask != 0 {
        errs.error(
            name.span(),
            format!("`{name}` is used to encode mappings or descriptors; `dirty_log_bit` must be a bit the manual leaves to software"),
        );
    }
}

/// `hardware_dirty` names two declared bits that no mapping or descriptor
/// predicate uses (the CPU changes them under npt: a mapping that read
/// them would see its flags change), other than the `dirty_log_bit`, and
/// `enabled_by` names a param.
fn check_hardware_dirty(f: &Format, errs: &mut Errors) {
    let Some(hw) = &f.hardware_dirty else {
        return;
    };
    // Bits in a kind's `set` are allowed (npt writes Arm's AF = 1 and the
    // CPU may set it again after a clear); predicates and mappings must not
    // read what the CPU changes.
    let used = f.mapping_bits() | f.predicate_bits();
    let second = hw
        .dirty
        .as_ref()
        .map(|d| ("dirty", d))
        .or(hw.writable_clean.as_ref().map(|w| ("writable_clean", w)));
    for (what, name) in std::iter::once(("accessed", &hw.accessed)).chain(second) {
        let Some(flag) = f.bits.iter().find(|b| b.name == *name) else {
            errs.error(
                name.span(),
                format!("`{what} = {name};` names no `bit`; declare the bit the CPU sets, e.g. `bit {name} = 9;`"),
            );
            continue;
        };
        let mask = 1u64 << flag.bit.value;
        if used & mask != 0 {
            errs.error(
                name.span(),
                format!("`{name}` encodes mappings or descriptors, but the CPU sets the `{what}` bit by itself; name the bit the manual says it writes"),
            );
        } else if f.dirty_log_bit.as_ref() == Some(name) {
            errs.error(
                name.span(),
                format!("`{name}` is also the `dirty_log_bit`, which npt writes: the CPU's `{what}` bit must be another"),
            );
        }
    }
    if let Some((what, name)) = second {
        if hw.accessed == *name {
            errs.error(
                name.span(),
                format!("`accessed` and `{what}` name the same bit; they are two different ones"),
            );
        }
    }
    if hw.writable_clean.is_some() && f.write_bits().is_none() {
        errs.error(
            hw.span,
            "with `writable_clean`, the dirty state is the write permission, so WRITE must toggle the same bits in every combination that has it (check the `map` rows for WRITE)",
        );
    }
    if let Some(p) = &hw.enabled_by {
        if !f.params.iter().any(|q| q.name == *p) {
            errs.error(
                p.span(),
                format!("`enabled_by = {p};` names no param; declare `param {p} {{ width = 1; }}` for the control that turns the CPU's updates on"),
            );
        }
    }
}

/// A `require` whose condition the geometry alone decides must hold:
/// one that can never hold would refuse every table of the format.
/// The same for a variant's geometry, pointing at the variant too (the
/// rule's condition is written once, in the base format).
fn check_requires_of(f: &Format, variant: Option<&syn::Ident>, errs: &mut Errors) {
    let root_pa = syn::Ident::new("root_pa", Span::call_site());
    let mut runtime: Vec<&syn::Ident> = vec![&root_pa];
    runtime.extend(f.params.iter().map(|p| &p.name));
    let env = Env {
        consts: const_env(f),
        runtime,
    };
    for q in &f.requires {
        if let Some(crate::eval::Value::Const(0)) = q.when.eval(&env, errs) {
            match variant {
                None => errs.error(
                    q.when.span(),
                    format!(
                        "`require {}` never holds for this format's geometry, so every table would be refused; fix the condition or drop the rule",
                        q.name
                    ),
                ),
                Some(v) => errs.conflict(
                    q.when.span(),
                    format!(
                        "`require {}` never holds for the geometry of variant `{v}`, so every table of it would be refused; fix the variant's geometry or the condition",
                        q.name
                    ),
                    v.span(),
                    format!("variant `{v}` declared here"),
                ),
            }
        }
    }
}
