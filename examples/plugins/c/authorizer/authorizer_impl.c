// The example token authorizer in C: `Authorization: Bearer <token>` with the tokens
// listed in the plugin's config (`tokens = { "<token>" = "<principal>" }`).
// Same behaviour as examples/plugins/rust/authorizer.
#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#include "authorizer.h"
#include "json.h"

static void log_line(weir_plugin_host_log_level_t level, const char *text) {
    authorizer_string_t s = {(uint8_t *)text, strlen(text)};
    weir_plugin_host_log(level, &s);
}

static void deny(authorizer_decision_t *ret, uint16_t status, const char *message) {
    ret->tag = WEIR_PLUGIN_OUTCOMES_DECISION_DENY;
    ret->val.deny.status = status;
    authorizer_string_dup(&ret->val.deny.message, message);
}

static void decide(const json_table_t *tokens, const authorizer_string_t *identity,
                   authorizer_decision_t *ret) {
    if (!identity) {
        deny(ret, 401, "missing token");
        return;
    }
    const uint8_t *v = identity->ptr;
    size_t n = identity->len;
    static const char scheme[] = "bearer ";
    if (n < 7) {
        deny(ret, 401, "expected a bearer token");
        return;
    }
    for (size_t i = 0; i < 7; i++) {
        if (tolower(v[i]) != scheme[i]) {
            deny(ret, 401, "expected a bearer token");
            return;
        }
    }
    size_t a = 7, b = n;
    while (a < b && v[a] == ' ') a++;
    while (b > a && v[b - 1] == ' ') b--;
    if (a == b) {
        deny(ret, 401, "expected a bearer token");
        return;
    }
    for (size_t i = 0; i < tokens->len; i++) {
        const json_pair_t *t = &tokens->pairs[i];
        if (t->key_len == b - a && memcmp(t->key, v + a, b - a) == 0) {
            ret->tag = WEIR_PLUGIN_OUTCOMES_DECISION_ALLOW;
            weir_plugin_outcomes_allow_t *allow = &ret->val.allow;
            authorizer_string_dup_n(&allow->principal_id, t->value, t->value_len);
            allow->context.len = 1;
            allow->context.ptr = malloc(sizeof *allow->context.ptr);
            authorizer_string_dup(&allow->context.ptr[0].f0, "scheme");
            authorizer_string_dup(&allow->context.ptr[0].f1, "bearer");
            allow->usage_identifier_key.is_some = false;
            return;
        }
    }
    deny(ret, 403, "unknown token");
}

void exports_authorizer_authorize(authorizer_authorization_request_t *req,
                                  authorizer_context_t *ctx, authorizer_decision_t *ret) {
    authorizer_string_t raw;
    weir_plugin_host_config(&raw);
    json_table_t tokens;
    const char *why = NULL;
    bool ok = json_config_table(raw.ptr, raw.len, "tokens", &tokens, &why);
    authorizer_string_free(&raw);
    text_t msg = {0};
    if (!ok) {
        text_add(&msg, "bad config: ");
        text_add(&msg, why);
        log_line(WEIR_PLUGIN_HOST_LOG_LEVEL_ERROR, text_cstr(&msg));
        deny(ret, 403, "authorizer misconfigured");
    } else {
        decide(&tokens, req->identity.len ? &req->identity.ptr[0] : NULL, ret);
        json_table_free(&tokens);
        if (ret->tag == WEIR_PLUGIN_OUTCOMES_DECISION_ALLOW) {
            text_add(&msg, "allow ");
            text_add_n(&msg, ret->val.allow.principal_id.ptr, ret->val.allow.principal_id.len);
            log_line(WEIR_PLUGIN_HOST_LOG_LEVEL_INFO, text_cstr(&msg));
        } else {
            text_add(&msg, "deny ");
            text_add_uint(&msg, ret->val.deny.status);
            text_add(&msg, ": ");
            text_add_n(&msg, ret->val.deny.message.ptr, ret->val.deny.message.len);
            log_line(WEIR_PLUGIN_HOST_LOG_LEVEL_WARN, text_cstr(&msg));
        }
    }
    free(msg.ptr);
    authorizer_authorization_request_free(req);
    authorizer_context_free(ctx);
}
