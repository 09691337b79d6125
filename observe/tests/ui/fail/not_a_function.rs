use vigil_observe::observe;

#[observe(model = "m")]
struct Model;

fn main() {}
