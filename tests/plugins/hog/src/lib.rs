//! Test mapper that allocates (and touches) memory without bound.

wit_bindgen::generate!({ world: "mapper", path: "../../../wit" });

struct Hog;

impl Guest for Hog {
    fn map_request(req: Request, _ctx: Context) -> RequestOutcome {
        let mut hoard: Vec<Vec<u8>> = Vec::new();
        loop {
            hoard.push(vec![0xa5; 1 << 20]);
            if std::hint::black_box(hoard.len()) == usize::MAX {
                return RequestOutcome::Forward(req);
            }
        }
    }

    fn map_response(resp: Response, _ctx: Context) -> Response {
        resp
    }
}

export!(Hog);
