// {{name}}: a Weir mapper. It adds `x-hello` to each request (the config's `greeting`,
// or "hello from {{name}}") and `x-mapped-by` to each response.
//
// Ownership follows wit-bindgen's C conventions: the arguments belong to the plugin
// (move their parts into the result or free them), and everything in the result must
// come from malloc: the generated post-return code frees it.
#include <stdlib.h>
#include <string.h>

#include "json.h"
#include "mapper.h"

@CONFIG@
// `list` with one more header, `name: value` (copied).
static void append_header(weir_plugin_types_list_header_t *list, const char *name, const char *value) {
    weir_plugin_types_header_t *out = malloc((list->len + 1) * sizeof *out);
    // An empty list's pointer need not come from malloc: only a filled one is freed.
    if (list->len) {
        memcpy(out, list->ptr, list->len * sizeof *out); // moved
        free(list->ptr);
    }
    mapper_string_dup(&out[list->len].f0, name);
    mapper_string_dup(&out[list->len].f1, value);
    list->ptr = out;
    list->len++;
}

void exports_mapper_map_request(mapper_request_t *req, mapper_context_t *ctx,
                                mapper_request_outcome_t *ret) {
    text_t msg = {0};
    text_add(&msg, "map-request ");
    text_add_n(&msg, req->method.ptr, req->method.len);
    text_add(&msg, " ");
    text_add_n(&msg, req->path.ptr, req->path.len);
    log_text(WEIR_PLUGIN_HOST_LOG_LEVEL_INFO, &msg);

    char *greeting = config_string("greeting");
    append_header(&req->headers, "x-hello", greeting ? greeting : "hello from {{name}}");
    free(greeting);
    ret->tag = WEIR_PLUGIN_OUTCOMES_REQUEST_OUTCOME_FORWARD;
    ret->val.forward = *req; // moved
    mapper_context_free(ctx);
}

void exports_mapper_map_response(mapper_response_t *resp, mapper_context_t *ctx,
                                 mapper_response_t *ret) {
    append_header(&resp->headers, "x-mapped-by", "{{name}}");
    *ret = *resp; // moved
    mapper_context_free(ctx);
}
