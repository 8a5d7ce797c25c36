// {{name}}: a Weir authorizer. It allows `Authorization: Bearer <token>` when the token
// is the config's `token` (default "let-me-in"), as the principal "user"; anything
// else is 401.
//
// Ownership follows wit-bindgen's C conventions: the arguments belong to the plugin
// (free them), and everything in the result must come from malloc: the generated
// post-return code frees it.
#include <stdlib.h>
#include <string.h>

#include "authorizer.h"
#include "json.h"

@CONFIG@
void exports_authorizer_authorize(authorizer_authorization_request_t *req,
                                  authorizer_context_t *ctx, authorizer_decision_t *ret) {
    char *token = config_string("token");
    const char *want = token ? token : "let-me-in";
    bool allowed = false;
    if (req->identity.len > 0) {
        const authorizer_string_t *v = &req->identity.ptr[0];
        size_t n = strlen(want);
        allowed = v->len == 7 + n && memcmp(v->ptr, "Bearer ", 7) == 0 &&
                  memcmp(v->ptr + 7, want, n) == 0;
    }
    free(token);
    text_t msg = {0};
    text_add(&msg, allowed ? "allow " : "deny ");
    text_add_n(&msg, req->method.ptr, req->method.len);
    text_add(&msg, " ");
    text_add_n(&msg, req->path.ptr, req->path.len);
    log_text(allowed ? WEIR_PLUGIN_HOST_LOG_LEVEL_INFO : WEIR_PLUGIN_HOST_LOG_LEVEL_WARN, &msg);
    if (allowed) {
        ret->tag = WEIR_PLUGIN_OUTCOMES_DECISION_ALLOW;
        weir_plugin_outcomes_allow_t *allow = &ret->val.allow;
        authorizer_string_dup(&allow->principal_id, "user");
        allow->context.len = 1;
        allow->context.ptr = malloc(sizeof *allow->context.ptr);
        authorizer_string_dup(&allow->context.ptr[0].f0, "scheme");
        authorizer_string_dup(&allow->context.ptr[0].f1, "bearer");
        allow->usage_identifier_key.is_some = false;
    } else {
        ret->tag = WEIR_PLUGIN_OUTCOMES_DECISION_DENY;
        ret->val.deny.status = 401;
        authorizer_string_dup(&ret->val.deny.message, "Unauthorized");
    }
    authorizer_authorization_request_free(req);
    authorizer_context_free(ctx);
}
