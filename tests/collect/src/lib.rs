//! `#[test]` for the integration tests (`tests/it`), which run on their own harness (`libtest-mimic`, so a test
//! that lacks something from the system is reported as ignored with its reason, counted in the closing summary).
//! The attribute keeps the function as written and registers it with `inventory`, under its module path, in the
//! harness's `support::Test` list; `tests/it/main.rs` runs the list. No `syn`: all it needs is the function's name.

use proc_macro::{TokenStream, TokenTree};

/// Registers a `fn name() { … }` as an integration test named `module::name`.
#[proc_macro_attribute]
pub fn test(args: TokenStream, item: TokenStream) -> TokenStream {
    if !args.is_empty() {
        return error("`#[test]` takes no arguments here");
    }
    let mut tokens = item.clone().into_iter();
    let name = loop {
        match tokens.next() {
            Some(TokenTree::Ident(i)) if i.to_string() == "fn" => match tokens.next() {
                Some(TokenTree::Ident(name)) => break name.to_string(),
                _ => return error("`#[test]` expects `fn name() { … }`"),
            },
            Some(_) => {}
            None => return error("`#[test]` goes on a function"),
        }
    };
    let register: TokenStream = format!(
        "::inventory::submit! {{ crate::support::Test {{ module: module_path!(), name: \"{name}\", run: {name} }} }}"
    )
    .parse()
    .expect("the registration is valid Rust");
    let mut out = item;
    out.extend(register);
    out
}

fn error(message: &str) -> TokenStream {
    format!("compile_error!({message:?});")
        .parse()
        .expect("a compile_error! call is valid Rust")
}
