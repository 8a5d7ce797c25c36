//! Test mapper built against the first released ABI, `wit/released/weir@0.1.0.wit`,
//! straight with wit-bindgen (the SDK follows the newest): the gateway must keep
//! running such components. Stamps `x-abi: 0.1.0` and the plugin's config on requests.

wit_bindgen::generate!({
    world: "mapper",
    path: "../../../wit/released/weir@0.1.0.wit",
});

// The world `use`s these types, so the bindings already name them at the root.
use weir::plugin::host;

struct Abi;

impl Guest for Abi {
    fn map_request(mut req: Request, _ctx: Context) -> RequestOutcome {
        host::log(host::LogLevel::Info, "abi 0.1.0 plugin ran");
        req.headers.push(("x-abi".into(), "0.1.0".into()));
        req.headers.push(("x-abi-config".into(), host::config()));
        RequestOutcome::Forward(req)
    }

    fn map_response(resp: Response, _ctx: Context) -> Response {
        resp
    }
}

export!(Abi);
