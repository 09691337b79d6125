use vigil_observe::observe;

#[observe(model = "m")]
const fn f() -> u32 {
    1
}

fn main() {}
