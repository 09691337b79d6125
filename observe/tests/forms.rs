//! The forms the attribute supports, exercised for real: methods, generics, `impl Trait`, `?` and early
//! return, async fns in traits.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::fmt::Display;

use support::*;
use vigil_observe::observe;

struct Model {
    name: String,
    calls: u32,
}

#[derive(Debug)]
struct ParseError;
impl Display for ParseError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("parse error")
    }
}
impl std::error::Error for ParseError {}
impl From<std::num::ParseIntError> for ParseError {
    fn from(_: std::num::ParseIntError) -> Self {
        ParseError
    }
}

impl Model {
    #[observe(model = self.name.as_str(), stage = "embed")]
    fn embed(&self, text: &str) -> Vec<f32> {
        text.bytes().map(f32::from).collect()
    }

    #[observe(model = self.name, stage = "count")]
    fn bump(&mut self) -> u32 {
        self.calls += 1;
        self.calls
    }

    /// Borrowed output tied to `self`.
    #[observe(model = self.name, stage = "name")]
    fn name(&self) -> &str {
        &self.name
    }

    #[observe(model = self.name, stage = "parse")]
    fn parse(&self, s: &str) -> Result<u32, ParseError> {
        if s == "early" {
            return Ok(0);
        }
        let v: u32 = s.parse()?;
        Ok(v * 2)
    }

    /// Consumes self.
    #[observe(model = "owned", stage = "into_name")]
    fn into_name(self) -> String {
        self.name
    }
}

#[observe(model = "generic", stage = "sum")]
fn sum<T: Into<f64> + Copy>(xs: &[T]) -> f64 {
    xs.iter().map(|x| (*x).into()).sum()
}

#[observe(model = "impl-trait", stage = "iter")]
fn evens(n: u32) -> impl Iterator<Item = u32> {
    (0..n).filter(|x| x % 2 == 0)
}

#[observe(model = "impl-trait", stage = "result")]
fn describe(ok: bool) -> Result<impl Display, ParseError> {
    if !ok {
        Err(ParseError)?;
    }
    Ok("fine")
}

#[observe(model = "unit", stage = "log")]
fn no_return(v: &mut Vec<u8>) {
    v.push(1);
}

trait Generator {
    async fn generate(&self, prompt: &str) -> Result<String, ParseError>;
}

struct Echo;

impl Generator for Echo {
    #[observe(model = "echo", stage = "generate")]
    async fn generate(&self, prompt: &str) -> Result<String, ParseError> {
        if prompt.is_empty() {
            return Err(ParseError);
        }
        let n: u32 = prompt.len().to_string().parse()?;
        Ok(format!("{prompt}:{n}"))
    }
}

#[test]
fn methods_with_self_references_and_values() {
    let mut m = Model {
        name: "bert".into(),
        calls: 0,
    };
    assert_eq!(m.embed("ab"), vec![97.0, 98.0]);
    assert_eq!(m.bump(), 1);
    assert_eq!(m.bump(), 2);
    assert_eq!(m.name(), "bert");
    assert_eq!(calls("bert", "embed"), 1.0);
    assert_eq!(calls("bert", "count"), 2.0);
    assert_eq!(m.into_name(), "bert");
    assert_eq!(calls("owned", "into_name"), 1.0);
}

#[test]
fn question_mark_and_early_return() {
    let m = Model {
        name: "parser".into(),
        calls: 0,
    };
    assert_eq!(m.parse("21").unwrap(), 42);
    assert_eq!(m.parse("early").unwrap(), 0);
    assert!(m.parse("nope").is_err());
    assert_eq!(calls("parser", "parse"), 3.0);
    assert_eq!(errors("parser", "parse"), 1.0);
    assert_eq!(anomalies("parser", "parse", "error"), 1.0);
}

#[test]
fn generics_impl_trait_and_unit() {
    assert_eq!(sum(&[1.0f32, 2.0]), 3.0);
    assert_eq!(sum(&[1u8, 2, 3]), 6.0);
    assert_eq!(evens(7).collect::<Vec<_>>(), vec![0, 2, 4, 6]);
    assert_eq!(describe(true).unwrap().to_string(), "fine");
    assert!(describe(false).is_err());
    let mut v = Vec::new();
    no_return(&mut v);
    assert_eq!(v, vec![1]);
    assert_eq!(calls("generic", "sum"), 2.0);
    assert_eq!(errors("impl-trait", "result"), 1.0);
    assert_eq!(calls("unit", "log"), 1.0);
}

#[test]
fn async_fn_in_trait() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    rt.block_on(async {
        assert_eq!(Echo.generate("hi").await.unwrap(), "hi:2");
        assert!(Echo.generate("").await.is_err());
    });
    assert_eq!(calls("echo", "generate"), 2.0);
    assert_eq!(errors("echo", "generate"), 1.0);
}

#[test]
fn totals_sum_every_series() {
    let before = vigil_observe::totals();
    assert_eq!(sum(&[1.0f64]), 1.0);
    let after = vigil_observe::totals();
    assert!(after.calls > before.calls);
}
