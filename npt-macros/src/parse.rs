//! Stage 1: spec tokens to a generic tree of spanned nodes.
//!
//! The grammar is deliberately small and meaning-free, so that every semantic
//! complaint is made later by the model builder with the right span:
//!
//! ```text
//! spec  := doc* "format" Ident "{" node* "}"
//! node  := doc* head ( "=" value ";" | "{" node* "}" | ";" )
//! head  := Ident token*          (tokens up to "=", "{" or ";")
//! value := token+                (tokens up to ";")
//! ```

use proc_macro2::{Delimiter, Span, TokenStream, TokenTree};
use syn::parse::{Parse, ParseStream};
use syn::{Attribute, Ident, Token};

/// A whole spec: `format Name { ... }`.
pub struct SpecTree {
    /// Doc comments on the format.
    pub docs: Vec<String>,
    /// The format's type name.
    pub name: Ident,
    /// The nodes inside the braces.
    pub nodes: Vec<Node>,
}

/// One `key ... = value;` or `key ... { ... }` node.
pub struct Node {
    /// Doc comments written above the node.
    pub docs: Vec<String>,
    /// The key: the first identifier of the head.
    pub key: Ident,
    /// Tokens after the key and before `=`, `{` or `;` (for example a name).
    pub args: Vec<TokenTree>,
    /// What follows the head.
    pub body: Body,
}

/// The part of a node after its head.
pub enum Body {
    /// `= tokens ;`
    Value(TokenStream),
    /// `{ nodes }`
    Block(Vec<Node>, Span),
    /// `;` alone.
    Empty,
}

impl Node {
    /// A span covering the key, used for errors about the node as a whole.
    pub fn span(&self) -> Span {
        self.key.span()
    }
}

fn docs_of(attrs: &[Attribute]) -> syn::Result<Vec<String>> {
    let mut docs = Vec::new();
    for attr in attrs {
        if !attr.path().is_ident("doc") {
            return Err(syn::Error::new_spanned(
                attr,
                "only doc comments are allowed on spec items; write a citation as `cite = \"...\";`",
            ));
        }
        if let syn::Meta::NameValue(nv) = &attr.meta {
            if let syn::Expr::Lit(syn::ExprLit {
                lit: syn::Lit::Str(s),
                ..
            }) = &nv.value
            {
                docs.push(s.value());
            }
        }
    }
    Ok(docs)
}

impl Parse for SpecTree {
    fn parse(input: ParseStream) -> syn::Result<Self> {
        let attrs = input.call(Attribute::parse_outer)?;
        let docs = docs_of(&attrs)?;
        let kw: Ident = input
            .parse()
            .map_err(|e| syn::Error::new(e.span(), "a spec starts with `format Name { ... }`"))?;
        if kw != "format" {
            return Err(syn::Error::new(
                kw.span(),
                "a spec starts with `format Name { ... }`",
            ));
        }
        let name: Ident = input.parse()?;
        let content;
        syn::braced!(content in input);
        let nodes = parse_nodes(&content)?;
        if !input.is_empty() {
            return Err(input
                .error("one spec per invocation: nothing may follow the format's closing brace"));
        }
        Ok(SpecTree { docs, name, nodes })
    }
}

fn parse_nodes(input: ParseStream) -> syn::Result<Vec<Node>> {
    let mut nodes = Vec::new();
    while !input.is_empty() {
        nodes.push(parse_node(input)?);
    }
    Ok(nodes)
}

fn parse_node(input: ParseStream) -> syn::Result<Node> {
    let attrs = input.call(Attribute::parse_outer)?;
    let docs = docs_of(&attrs)?;
    let key = input
        .call(<Ident as syn::ext::IdentExt>::parse_any)
        .map_err(|e| {
            syn::Error::new(
                e.span(),
                "expected a key such as `granule`, `level`, `field` or `flush`",
            )
        })?;
    let mut args = Vec::new();
    loop {
        if input.is_empty() {
            return Err(syn::Error::new(
                key.span(),
                format!("`{key}` needs a value (`{key} = ...;`) or a block (`{key} {{ ... }}`)"),
            ));
        }
        if input.peek(Token![;]) {
            input.parse::<Token![;]>()?;
            return Ok(Node {
                docs,
                key,
                args,
                body: Body::Empty,
            });
        }
        if input.peek(Token![=]) && !input.peek(Token![=>]) {
            let eq: Token![=] = input.parse()?;
            let mut value = TokenStream::new();
            while !input.is_empty() && !input.peek(Token![;]) {
                // `key = value` followed by `next = ...` on the next line
                // means the `;` after the value was forgotten.
                if !value.is_empty()
                    && input.peek(syn::Ident)
                    && input.peek2(Token![=])
                    && !input.peek2(Token![==])
                    && !input.peek2(Token![=>])
                {
                    let next: Ident = input.fork().parse()?;
                    let last = value
                        .clone()
                        .into_iter()
                        .last()
                        .map_or(key.span(), |t| t.span());
                    return Err(syn::Error::new(
                        last,
                        format!("missing `;` after the value of `{key}` (before `{next}`)"),
                    ));
                }
                value.extend([input.parse::<TokenTree>()?]);
            }
            if input.is_empty() {
                return Err(syn::Error::new(
                    key.span(),
                    format!("missing `;` after the value of `{key}`"),
                ));
            }
            input.parse::<Token![;]>()?;
            if value.is_empty() {
                return Err(syn::Error::new(
                    eq.span,
                    format!("`{key} =` needs a value before `;`"),
                ));
            }
            return Ok(Node {
                docs,
                key,
                args,
                body: Body::Value(value),
            });
        }
        if input.peek(syn::token::Brace) {
            let tt: TokenTree = input.parse()?;
            let TokenTree::Group(group) = tt else {
                unreachable!("peeked a brace")
            };
            debug_assert_eq!(group.delimiter(), Delimiter::Brace);
            let nodes = syn::parse::Parser::parse2(parse_nodes, group.stream())?;
            return Ok(Node {
                docs,
                key,
                args,
                body: Body::Block(nodes, group.span()),
            });
        }
        args.push(input.parse::<TokenTree>()?);
    }
}
