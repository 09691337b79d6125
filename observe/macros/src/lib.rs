//! The `#[vigil::observe]` attribute macro. A thin layer: it parses the arguments, wraps the function
//! body, and leaves all the work to the runtime in `vigil-observe` (`__private`).

use proc_macro::TokenStream;
use proc_macro2::{Span, TokenStream as TokenStream2};
use quote::quote;
use syn::parse::{Parse, ParseStream};
use syn::punctuated::Punctuated;
use syn::visit_mut::VisitMut;
use syn::{Expr, ExprLit, ItemFn, Lit, LitStr, Path, ReturnType, Token, Type};

mod kw {
    syn::custom_keyword!(model);
    syn::custom_keyword!(stage);
    syn::custom_keyword!(check);
    syn::custom_keyword!(check_output);
}

enum Arg {
    Model(kw::model, Expr),
    Stage(kw::stage, Expr),
    Check(kw::check, Path),
    CheckOutput(kw::check_output),
}

impl Parse for Arg {
    fn parse(input: ParseStream<'_>) -> syn::Result<Self> {
        let look = input.lookahead1();
        if look.peek(kw::model) {
            let k = input.parse()?;
            input.parse::<Token![=]>()?;
            Ok(Arg::Model(k, input.parse()?))
        } else if look.peek(kw::stage) {
            let k = input.parse()?;
            input.parse::<Token![=]>()?;
            Ok(Arg::Stage(k, input.parse()?))
        } else if look.peek(kw::check_output) {
            Ok(Arg::CheckOutput(input.parse()?))
        } else if look.peek(kw::check) {
            let k = input.parse()?;
            input.parse::<Token![=]>()?;
            Ok(Arg::Check(k, input.parse()?))
        } else {
            Err(syn::Error::new(
                input.span(),
                "unknown argument: #[observe] takes `model = <expr>`, `stage = <expr>`, \
                 `check = <path to fn(&T) -> bool>` and `check_output`",
            ))
        }
    }
}

#[derive(Default)]
struct Args {
    model: Option<Expr>,
    stage: Option<Expr>,
    check: Option<Path>,
    check_output: bool,
}

impl Parse for Args {
    fn parse(input: ParseStream<'_>) -> syn::Result<Self> {
        let mut a = Args::default();
        let mut check_span = None;
        for arg in Punctuated::<Arg, Token![,]>::parse_terminated(input)? {
            let dup =
                |span: Span, what: &str| syn::Error::new(span, format!("`{what}` is given twice"));
            match arg {
                Arg::Model(k, e) => {
                    if a.model.replace(e).is_some() {
                        return Err(dup(k.span, "model"));
                    }
                }
                Arg::Stage(k, e) => {
                    if a.stage.replace(e).is_some() {
                        return Err(dup(k.span, "stage"));
                    }
                }
                Arg::Check(k, p) => {
                    if a.check.replace(p).is_some() {
                        return Err(dup(k.span, "check"));
                    }
                    check_span.get_or_insert(k.span);
                }
                Arg::CheckOutput(k) => {
                    if a.check_output {
                        return Err(dup(k.span, "check_output"));
                    }
                    a.check_output = true;
                    check_span.get_or_insert(k.span);
                }
            }
        }
        if a.check.is_some() && a.check_output {
            return Err(syn::Error::new(
                check_span.unwrap_or_else(Span::call_site),
                "use either `check = <fn>` or `check_output`, not both",
            ));
        }
        if a.model.is_none() {
            return Err(syn::Error::new(
                Span::call_site(),
                "missing `model = <expr>`, e.g. #[observe(model = req.model_id.as_str(), stage = \"predict\")]",
            ));
        }
        Ok(a)
    }
}

/// Records `ai_inference_duration_seconds{model,stage}`, `ai_inference_errors_total{model,stage}` and
/// `ai_inference_anomaly_total{model,stage,anomaly_type}` for every call of the function.
///
/// Arguments: `model = <expr>` (required; any expression over the arguments whose value is
/// `AsRef<str>`, or a literal), `stage = <expr>` (default: the function's name), and optionally
/// `check = path::to_fn` (a `fn(&T) -> bool` that returns `false` for a corrupt output `T`, recorded as
/// `nan_output`) or `check_output` (the same through the `OutputCheck` trait: floats, slices, `Vec`s,
/// ndarray arrays).
///
/// Works on sync and async functions and methods, with `impl Trait` returns, `?` and early `return`.
/// Errors are classified when the declared return type is named `Result` (`std`, `io`, `anyhow` and
/// other aliases): by `ClassifyAnomaly` when the error implements it, else by the `std::error::Error`
/// defaults, else as `error`.
#[proc_macro_attribute]
pub fn observe(attr: TokenStream, item: TokenStream) -> TokenStream {
    expand(attr, item, quote!(::vigil_observe))
}

/// The same attribute, expanding to paths through the `vigil` facade (`vigil::observe`).
#[doc(hidden)]
#[proc_macro_attribute]
pub fn observe_via_vigil(attr: TokenStream, item: TokenStream) -> TokenStream {
    expand(attr, item, quote!(::vigil::observe))
}

fn expand(attr: TokenStream, item: TokenStream, rt: TokenStream2) -> TokenStream {
    let args = match syn::parse::<Args>(attr) {
        Ok(a) => a,
        Err(e) => return e.to_compile_error().into(),
    };
    let func = match syn::parse::<ItemFn>(item) {
        Ok(f) => f,
        Err(e) => {
            return syn::Error::new(
                e.span(),
                "#[observe] goes on a function or method with a body",
            )
            .to_compile_error()
            .into();
        }
    };
    match expand_fn(args, func, &rt) {
        Ok(t) => t.into(),
        Err(e) => e.to_compile_error().into(),
    }
}

/// Replaces every `impl Trait` in a type with `_`, so the body's type can be annotated without naming
/// what only the compiler knows.
struct InferImpl;

impl VisitMut for InferImpl {
    fn visit_type_mut(&mut self, ty: &mut Type) {
        if let Type::ImplTrait(t) = ty {
            *ty = Type::Infer(syn::TypeInfer {
                underscore_token: Token![_](t.impl_token.span),
            });
            return;
        }
        syn::visit_mut::visit_type_mut(self, ty);
    }
}

fn is_result(ty: &Type) -> bool {
    match ty {
        Type::Path(p) => p.path.segments.last().is_some_and(|s| s.ident == "Result"),
        Type::Paren(p) => is_result(&p.elem),
        Type::Group(g) => is_result(&g.elem),
        _ => false,
    }
}

fn literal(e: &Expr) -> Option<&LitStr> {
    match e {
        Expr::Lit(ExprLit {
            lit: Lit::Str(s), ..
        }) => Some(s),
        _ => None,
    }
}

fn expand_fn(args: Args, func: ItemFn, rt: &TokenStream2) -> syn::Result<TokenStream2> {
    let ItemFn {
        attrs,
        vis,
        sig,
        block,
    } = func;
    if let Some(c) = &sig.constness {
        return Err(syn::Error::new(
            c.span,
            "#[observe] cannot instrument a `const fn` (it reads the clock)",
        ));
    }
    let model = args.model.unwrap_or_else(|| syn::parse_quote!(""));
    let stage = args.stage.unwrap_or_else(|| {
        let name = LitStr::new(&sig.ident.to_string(), sig.ident.span());
        syn::parse_quote!(#name)
    });

    let begin = match (literal(&model), literal(&stage)) {
        (Some(m), Some(s)) => quote! {{
            static __VIGIL_SITE: #rt::__private::CallSite = #rt::__private::CallSite::new(#m, #s);
            #rt::__private::begin_at(&__VIGIL_SITE)
        }},
        _ => quote! {
            #rt::__private::begin(
                ::core::convert::AsRef::<str>::as_ref(&(#model)),
                ::core::convert::AsRef::<str>::as_ref(&(#stage)),
            )
        },
    };

    let (annotation, result_like) = match &sig.output {
        ReturnType::Default => (quote!(: ()), false),
        ReturnType::Type(_, ty) => {
            let mut t = (**ty).clone();
            InferImpl.visit_type_mut(&mut t);
            (quote!(: #t), is_result(ty))
        }
    };

    let nan = quote!(::core::option::Option::Some(#rt::AnomalyType::NanOutput));
    let none = quote!(::core::option::Option::None);
    let check = |v: TokenStream2| match (&args.check, args.check_output) {
        (Some(path), _) => quote!(if #path(#v) { #none } else { #nan }),
        (None, true) => quote!(if #rt::__private::check_output(#v) { #none } else { #nan }),
        (None, false) => none.clone(),
    };
    let classify = if result_like {
        let ok = check(quote!(__vigil_v));
        quote! {
            match &__vigil_result {
                ::core::result::Result::Ok(__vigil_v) => { let _ = __vigil_v; #ok }
                ::core::result::Result::Err(__vigil_e) => ::core::option::Option::Some({
                    #[allow(unused_imports, clippy::needless_borrow)]
                    use #rt::__private::{ViaAny as _, ViaStdError as _, ViaUser as _};
                    (&&&#rt::__private::ErrProbe(__vigil_e)).__vigil_anomaly()
                }),
            }
        }
    } else {
        check(quote!(&__vigil_result))
    };

    let run = if sig.asyncness.is_some() {
        quote!(async move { let __vigil_r #annotation = #block; __vigil_r }.await)
    } else {
        quote!((move || { let __vigil_r #annotation = #block; __vigil_r })())
    };

    Ok(quote! {
        #(#attrs)*
        #vis #sig {
            let __vigil_call = if #rt::__private::enabled() {
                ::core::option::Option::Some(#begin)
            } else {
                ::core::option::Option::None
            };
            let __vigil_result = #run;
            if let ::core::option::Option::Some(__vigil_call) = __vigil_call {
                let __vigil_anomaly: ::core::option::Option<#rt::AnomalyType> = #classify;
                __vigil_call.finish(__vigil_anomaly);
            }
            __vigil_result
        }
    })
}
