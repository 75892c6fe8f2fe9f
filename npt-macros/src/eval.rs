//! Register-value expressions: `64 - input_bits`, `root_pa >> 12`,
//! `(3 - start_level) * (granule_shift - 3)`,
//! `match start_level { 0 => 2, 1 => 1 }`.
//!
//! Parts that depend only on the geometry are folded here, at compile time,
//! so a spec that asks for an impossible value (no `match` arm for this
//! geometry, a value too wide for its bits) fails to compile. Parts that
//! depend on the root table's address or a run-time parameter become
//! overflow-checked code.

use crate::errors::Errors;
use proc_macro2::{Span, TokenStream};
use quote::quote;
use syn::Ident;

#[derive(Clone, Copy)]
pub enum BinOp {
    Add,
    Sub,
    Mul,
    Shl,
    Shr,
    And,
    Or,
    /// `&&` and `||`: 1 or 0 from the operands' truth (non-zero).
    LogAnd,
    LogOr,
    /// Comparisons give 1 or 0 (for `require` conditions).
    Lt,
    Le,
    Gt,
    Ge,
    Eq,
    Ne,
}

#[derive(Clone)]
pub enum Expr {
    Lit(u64, Span),
    Name(Ident),
    Bin(BinOp, Box<Expr>, Box<Expr>, Span),
    Match(Box<Expr>, Vec<(u64, Expr)>, Span),
}

/// Names an expression may use, with their compile-time values where known.
pub struct Env<'a> {
    /// Quantities fixed by the geometry.
    pub consts: Vec<(&'static str, u64)>,
    /// Quantities known only at run time: `root_pa` and the params.
    pub runtime: Vec<&'a Ident>,
}

/// What evaluating an expression gave.
pub enum Value {
    Const(u64),
    /// Run-time code of type `Option<u64>` (None on overflow).
    Runtime(TokenStream),
}

impl Expr {
    /// Whether the expression reads the name `name`.
    pub fn uses(&self, name: &str) -> bool {
        match self {
            Expr::Lit(..) => false,
            Expr::Name(id) => id == name,
            Expr::Bin(_, a, b, _) => a.uses(name) || b.uses(name),
            Expr::Match(e, arms, _) => e.uses(name) || arms.iter().any(|(_, x)| x.uses(name)),
        }
    }

    pub fn from_syn(e: &syn::Expr, errs: &mut Errors) -> Option<Expr> {
        use syn::spanned::Spanned;
        match e {
            syn::Expr::Lit(syn::ExprLit {
                lit: syn::Lit::Int(i),
                ..
            }) => match crate::model::sized_int(i) {
                Ok(v) => Some(Expr::Lit(v, i.span())),
                Err(msg) => {
                    errs.error(i.span(), msg);
                    None
                }
            },
            syn::Expr::Path(p) if p.path.get_ident().is_some() => {
                Some(Expr::Name(p.path.get_ident().cloned().expect("checked")))
            }
            syn::Expr::Paren(p) => Expr::from_syn(&p.expr, errs),
            syn::Expr::Binary(b) => {
                let op = match b.op {
                    syn::BinOp::Add(_) => BinOp::Add,
                    syn::BinOp::Sub(_) => BinOp::Sub,
                    syn::BinOp::Mul(_) => BinOp::Mul,
                    syn::BinOp::Shl(_) => BinOp::Shl,
                    syn::BinOp::Shr(_) => BinOp::Shr,
                    syn::BinOp::BitAnd(_) => BinOp::And,
                    syn::BinOp::BitOr(_) => BinOp::Or,
                    syn::BinOp::And(_) => BinOp::LogAnd,
                    syn::BinOp::Or(_) => BinOp::LogOr,
                    syn::BinOp::Lt(_) => BinOp::Lt,
                    syn::BinOp::Le(_) => BinOp::Le,
                    syn::BinOp::Gt(_) => BinOp::Gt,
                    syn::BinOp::Ge(_) => BinOp::Ge,
                    syn::BinOp::Eq(_) => BinOp::Eq,
                    syn::BinOp::Ne(_) => BinOp::Ne,
                    _ => {
                        errs.error(
                            b.op.span(),
                            "expressions may use only + - * << >> & | && || < <= > >= == !=",
                        );
                        return None;
                    }
                };
                let l = Expr::from_syn(&b.left, errs);
                let r = Expr::from_syn(&b.right, errs);
                Some(Expr::Bin(op, Box::new(l?), Box::new(r?), b.op.span()))
            }
            syn::Expr::Match(m) => {
                let scrut = Expr::from_syn(&m.expr, errs);
                let mut arms = Vec::new();
                for arm in &m.arms {
                    let key = match &arm.pat {
                        syn::Pat::Lit(syn::PatLit {
                            lit: syn::Lit::Int(i),
                            ..
                        }) => crate::model::sized_int(i).ok(),
                        _ => None,
                    };
                    let Some(key) = key else {
                        errs.error(
                            arm.pat.span(),
                            "a `match` arm in a register value is an integer literal",
                        );
                        continue;
                    };
                    if let Some(v) = Expr::from_syn(&arm.body, errs) {
                        arms.push((key, v));
                    }
                }
                Some(Expr::Match(Box::new(scrut?), arms, m.match_token.span))
            }
            other => {
                errs.error(
                    other.span(),
                    "a register value is an integer (with an optional K, M, G or T suffix), a quantity (levels, input_bits, output_bits, start_level, granule, granule_shift, root_tables, root_align, root_pa, or a param), an arithmetic expression (+ - * << >> & |, comparisons, && ||), or a `match` on one",
                );
                None
            }
        }
    }

    pub fn span(&self) -> Span {
        match self {
            Expr::Lit(_, s) | Expr::Bin(_, _, _, s) | Expr::Match(_, _, s) => *s,
            Expr::Name(id) => id.span(),
        }
    }

    /// Folds what can be folded; reports unknown names and impossible
    /// arithmetic at the offending token.
    pub fn eval(&self, env: &Env, errs: &mut Errors) -> Option<Value> {
        match self {
            Expr::Lit(v, _) => Some(Value::Const(*v)),
            Expr::Name(id) => {
                let name = id.to_string();
                if let Some((_, v)) = env.consts.iter().find(|(n, _)| *n == name) {
                    return Some(Value::Const(*v));
                }
                if env.runtime.iter().any(|r| **r == name) {
                    let v = id.clone();
                    return Some(Value::Runtime(quote!(::core::option::Option::Some(#v))));
                }
                let known: Vec<String> = env
                    .consts
                    .iter()
                    .map(|(n, _)| n.to_string())
                    .chain(env.runtime.iter().map(|r| r.to_string()))
                    .collect();
                errs.error(
                    id.span(),
                    format!("unknown quantity `{id}`; known: {}", known.join(", ")),
                );
                None
            }
            Expr::Bin(op, l, r, span) => {
                let l = l.eval(env, errs);
                let r = r.eval(env, errs);
                match (l?, r?) {
                    (Value::Const(a), Value::Const(b)) => {
                        let v = match op {
                            BinOp::Add => a.checked_add(b),
                            BinOp::Sub => a.checked_sub(b),
                            BinOp::Mul => a.checked_mul(b),
                            BinOp::Shl => u32::try_from(b).ok().and_then(|b| a.checked_shl(b)),
                            BinOp::Shr => u32::try_from(b).ok().and_then(|b| a.checked_shr(b)),
                            BinOp::And => Some(a & b),
                            BinOp::Or => Some(a | b),
                            BinOp::LogAnd => Some((a != 0 && b != 0) as u64),
                            BinOp::LogOr => Some((a != 0 || b != 0) as u64),
                            BinOp::Lt => Some((a < b) as u64),
                            BinOp::Le => Some((a <= b) as u64),
                            BinOp::Gt => Some((a > b) as u64),
                            BinOp::Ge => Some((a >= b) as u64),
                            BinOp::Eq => Some((a == b) as u64),
                            BinOp::Ne => Some((a != b) as u64),
                        };
                        if v.is_none() {
                            errs.error(
                                *span,
                                "this arithmetic overflows for this format's geometry",
                            );
                        }
                        v.map(Value::Const)
                    }
                    (a, b) => {
                        let a = a.into_tokens();
                        let b = b.into_tokens();
                        let body = match op {
                            BinOp::Add => quote!(a.checked_add(b)),
                            BinOp::Sub => quote!(a.checked_sub(b)),
                            BinOp::Mul => quote!(a.checked_mul(b)),
                            BinOp::Shl => {
                                quote!(u32::try_from(b).ok().and_then(|b| a.checked_shl(b)))
                            }
                            BinOp::Shr => {
                                quote!(u32::try_from(b).ok().and_then(|b| a.checked_shr(b)))
                            }
                            BinOp::And => quote!(::core::option::Option::Some(a & b)),
                            BinOp::Or => quote!(::core::option::Option::Some(a | b)),
                            BinOp::LogAnd => {
                                quote!(::core::option::Option::Some((a != 0 && b != 0) as u64))
                            }
                            BinOp::LogOr => {
                                quote!(::core::option::Option::Some((a != 0 || b != 0) as u64))
                            }
                            BinOp::Lt => quote!(::core::option::Option::Some((a < b) as u64)),
                            BinOp::Le => quote!(::core::option::Option::Some((a <= b) as u64)),
                            BinOp::Gt => quote!(::core::option::Option::Some((a > b) as u64)),
                            BinOp::Ge => quote!(::core::option::Option::Some((a >= b) as u64)),
                            BinOp::Eq => quote!(::core::option::Option::Some((a == b) as u64)),
                            BinOp::Ne => quote!(::core::option::Option::Some((a != b) as u64)),
                        };
                        Some(Value::Runtime(quote!(match (#a, #b) {
                            (::core::option::Option::Some(a), ::core::option::Option::Some(b)) => #body,
                            _ => ::core::option::Option::None,
                        })))
                    }
                }
            }
            Expr::Match(scrut, arms, span) => match scrut.eval(env, errs)? {
                Value::Const(k) => match arms.iter().find(|(key, _)| *key == k) {
                    Some((_, v)) => v.eval(env, errs),
                    None => {
                        errs.error(*span, format!("no `match` arm for {k}, the value this format gives; add `{k} => ...`"));
                        None
                    }
                },
                Value::Runtime(scrut) => {
                    // On a run-time value: a value with no arm is an error
                    // at run time (`None`, reported as a register field
                    // that cannot hold its value).
                    let mut out = Vec::new();
                    for (key, v) in arms {
                        let v = v.eval(env, errs)?.into_tokens();
                        out.push(quote!(::core::option::Option::Some(#key) => #v,));
                    }
                    Some(Value::Runtime(quote!(match #scrut {
                        #(#out)*
                        _ => ::core::option::Option::None,
                    })))
                }
            },
        }
    }
}

impl Value {
    pub fn into_tokens(self) -> TokenStream {
        match self {
            Value::Const(v) => quote!(::core::option::Option::Some(#v)),
            Value::Runtime(t) => t,
        }
    }
}
