use vigil_observe::observe;

struct Server {
    model: String,
}

impl Server {
    #[observe(model = self.model.as_str(), stage = "predict", check_output)]
    async fn predict(&mut self, x: Vec<f32>) -> Result<Vec<f32>, std::io::Error> {
        if x.is_empty() {
            return Err(std::io::Error::other("empty"));
        }
        let n: usize = "3".parse().map_err(std::io::Error::other)?;
        Ok(x.into_iter().take(n).collect())
    }
}

fn finite(v: &f64) -> bool {
    v.is_finite()
}

#[observe(model = "m", stage = "s", check = finite)]
fn score(x: f64) -> f64 {
    x.sqrt()
}

#[observe(model = "m")]
fn default_stage<T: Clone>(x: &T) -> impl Clone + use<T> {
    x.clone()
}

fn main() {
    let _ = score(2.0);
    let _ = default_stage(&1u8);
    let mut s = Server { model: "m".into() };
    drop(s.predict(vec![1.0]));
}
