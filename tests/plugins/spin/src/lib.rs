//! Test mapper that never returns.

wit_bindgen::generate!({ world: "mapper", path: "../../../wit" });

struct Spin;

impl Guest for Spin {
    fn map_request(req: Request, _ctx: Context) -> RequestOutcome {
        let mut n: u64 = 0;
        loop {
            n = std::hint::black_box(n.wrapping_add(1));
            if std::hint::black_box(n) == 0 {
                return RequestOutcome::Forward(req);
            }
        }
    }

    fn map_response(resp: Response, _ctx: Context) -> Response {
        resp
    }
}

export!(Spin);
