//! Compile-time encodings: the bits a name, an assignment, a predicate or a
//! `MappingFlags` combination stands for. Shared by the checks (which prove
//! every legal combination gives a valid leaf) and by codegen (which emits
//! the results as tables, so the runtime does no interpretation of names).

use crate::model::{Assign, Format, MFlag, Mapping, Pred};

/// Why a `MappingFlags` combination has no encoding.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Illegal {
    /// The spec forbids it; index into `permissions.forbids`.
    Forbidden(usize),
    /// The mapping with this index has no row for the combination.
    NoRow(usize),
}

impl Format {
    pub fn flag_bit(&self, name: &str) -> Option<u64> {
        self.bits
            .iter()
            .find(|f| f.name == name)
            .map(|f| f.bit.value)
    }

    /// (mask, value) of one assignment, or `None` if a name is unknown or a
    /// bit position is out of range (the checks report those).
    pub fn assign_bits(&self, a: &Assign) -> Option<(u64, u64)> {
        match a {
            Assign::Flag(name) => {
                let bit = self.flag_bit(&name.to_string()).filter(|b| *b < 64)?;
                Some((1 << bit, 1 << bit))
            }
            Assign::Field(field, variant) => {
                let f = self.fields.iter().find(|f| f.name == *field)?;
                if f.bits.hi >= 64 || f.bits.lo > f.bits.hi {
                    return None;
                }
                let v = f.variants.iter().find(|v| v.name == *variant)?;
                let mask = f.bits.mask();
                Some((mask, (v.value.value << f.bits.lo) & mask))
            }
        }
    }

    /// (mask, value) of a list of assignments.
    pub fn assigns_bits(&self, list: &[Assign]) -> Option<(u64, u64)> {
        let mut mask = 0;
        let mut value = 0;
        for a in list {
            let (m, v) = self.assign_bits(a)?;
            mask |= m;
            value = (value & !m) | v;
        }
        Some((mask, value))
    }

    /// The bits of a flag or field, by name.
    pub fn name_mask(&self, name: &str) -> Option<u64> {
        if let Some(bit) = self.flag_bit(name).filter(|b| *b < 64) {
            return Some(1 << bit);
        }
        self.fields
            .iter()
            .find(|f| f.name == name && f.bits.lo <= f.bits.hi && f.bits.hi < 64)
            .map(|f| f.bits.mask())
    }

    /// The mask a predicate tests.
    pub fn pred_mask(&self, p: &Pred) -> Option<u64> {
        let names = match p {
            Pred::Always => return Some(0),
            Pred::Any(n) | Pred::All(n) | Pred::None(n) => n,
        };
        let mut mask = 0;
        for n in names {
            mask |= 1 << self.flag_bit(&n.to_string()).filter(|b| *b < 64)?;
        }
        Some(mask)
    }

    pub fn pred_holds(&self, p: &Pred, raw: u64) -> Option<bool> {
        let mask = self.pred_mask(p)?;
        Some(match p {
            Pred::Always => true,
            Pred::Any(_) => raw & mask != 0,
            Pred::All(_) => raw & mask == mask,
            Pred::None(_) => raw & mask == 0,
        })
    }

    /// The `MappingFlags` bits the spec ignores.
    pub fn ignored_bits(&self) -> usize {
        self.permissions
            .ignore
            .iter()
            .fold(0, |m, f| m | f.value.bit())
    }

    /// The attribute bits (mask, value) a `MappingFlags` combination (given as
    /// its bits) encodes to, or why it has none. `None` if names are broken.
    /// An unconditional `forbid` decides before one with `unless`.
    pub fn encode_combo(&self, combo: usize) -> Option<Result<(u64, u64), Illegal>> {
        if let Some(i) = self.forbidding(combo).next() {
            return Some(Err(Illegal::Forbidden(i)));
        }
        self.encode_rows(combo)
    }

    /// The `forbid`s that refuse `combo` (indexes), unconditional ones first.
    pub fn forbidding(&self, combo: usize) -> impl Iterator<Item = usize> + '_ {
        let combo = combo & !self.ignored_bits();
        let hits = move |conditional: bool| {
            self.permissions
                .forbids
                .iter()
                .enumerate()
                .filter(move |(_, f)| {
                    f.unless.is_some() == conditional
                        && f.flags
                            .iter()
                            .all(|(fl, present)| (combo & fl.value.bit() != 0) == *present)
                })
                .map(|(i, _)| i)
        };
        hits(false).chain(hits(true))
    }

    /// What the mapping rows alone make of `combo`, whatever `forbid` says.
    pub fn encode_rows(&self, combo: usize) -> Option<Result<(u64, u64), Illegal>> {
        let combo = combo & !self.ignored_bits();
        let mut mask = 0;
        let mut value = 0;
        for (i, m) in self.permissions.mappings.iter().enumerate() {
            let key = combo & governed_bits(m);
            let Some(row) = m.rows.iter().find(|r| row_bits(&r.flags) == key) else {
                return Some(Err(Illegal::NoRow(i)));
            };
            let (rm, rv) = self.assigns_bits(&row.assigns)?;
            mask |= rm;
            value = (value & !rm) | rv;
        }
        Some(Ok((mask, value)))
    }

    /// The bits WRITE toggles in a leaf, if it toggles the same nonzero bits
    /// in every combination where both it and it without WRITE encode.
    pub fn write_bits(&self) -> Option<u64> {
        let w = MFlag::Write.bit();
        let mut bits = None;
        for combo in 0..64usize {
            if combo & w == 0 || combo & self.ignored_bits() != 0 {
                continue;
            }
            let (Some(Ok((_, a))), Some(Ok((_, b)))) =
                (self.encode_combo(combo), self.encode_combo(combo & !w))
            else {
                continue;
            };
            match bits {
                None => bits = Some(a ^ b),
                Some(x) if x == a ^ b => {}
                Some(_) => return None,
            }
        }
        bits.filter(|b| *b != 0)
    }

    /// Every bit any `map` row may assign.
    pub fn mapping_bits(&self) -> u64 {
        self.permissions
            .mappings
            .iter()
            .filter_map(|m| self.mapping_mask(m))
            .fold(0, |a, b| a | b)
    }

    /// Every bit the descriptor predicates read: `present` and each kind's
    /// `is`.
    pub fn predicate_bits(&self) -> u64 {
        let d = &self.descriptors;
        [
            Some(&d.present),
            Some(&d.table.is),
            Some(&d.page.is),
            d.block.as_ref().map(|b| &b.is),
        ]
        .into_iter()
        .flatten()
        .filter_map(|p| self.pred_mask(p))
        .fold(0, |a, b| a | b)
    }

    /// Every bit the descriptor kinds' `set` lists write.
    pub fn kind_set_bits(&self) -> u64 {
        let d = &self.descriptors;
        [Some(&d.table), Some(&d.page), d.block.as_ref()]
            .into_iter()
            .flatten()
            .filter_map(|k| self.assigns_bits(&k.set).map(|(m, _)| m))
            .fold(0, |a, b| a | b)
    }

    /// Every bit any mapping row may assign, per mapping.
    pub fn mapping_mask(&self, m: &Mapping) -> Option<u64> {
        let mut mask = 0;
        for r in &m.rows {
            mask |= self.assigns_bits(&r.assigns)?.0;
        }
        Some(mask)
    }
}

pub fn governed_bits(m: &Mapping) -> usize {
    m.governs.iter().fold(0, |acc, f| acc | f.value.bit())
}

pub fn row_bits(flags: &[crate::model::Spanned<MFlag>]) -> usize {
    flags.iter().fold(0, |acc, f| acc | f.value.bit())
}

/// A combination as a list, `[READ, WRITE]` (`[]` for none).
pub fn combo_name(combo: usize) -> String {
    let names: Vec<&str> = MFlag::ALL
        .iter()
        .filter(|f| combo & f.bit() != 0)
        .map(|f| f.name())
        .collect();
    format!("[{}]", names.join(", "))
}
