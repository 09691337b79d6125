use vigil_observe::observe;

struct Opaque;

#[observe(model = "m", check_output)]
fn f() -> Opaque {
    Opaque
}

fn main() {}
