#ifndef CKSTORE_CCURL_SHIM_H
#define CKSTORE_CCURL_SHIM_H
// Swift cannot call C variadic functions, and curl_easy_setopt / curl_easy_getinfo are variadic
// macros over variadic functions. These non-variadic wrappers pass exactly one argument of the
// type the option expects (libcurl reads it with va_arg of that type).
#include <curl/curl.h>
#include <stddef.h>
#include <sys/types.h>

/// A write or header callback: (data, size, count, userdata) -> bytes consumed.
typedef size_t (*ckstore_curl_data_callback)(char *, size_t, size_t, void *);

/// curl_easy_setopt for options taking a long (CURLOPTTYPE_LONG).
static inline CURLcode ckstore_curl_setopt_long(CURL *handle, CURLoption option, long value) {
    return curl_easy_setopt(handle, option, value);
}

/// curl_easy_setopt for options taking a pointer: strings, curl_slist, userdata
/// (CURLOPTTYPE_OBJECTPOINT, CURLOPTTYPE_STRINGPOINT, CURLOPTTYPE_SLISTPOINT, CURLOPTTYPE_CBPOINT).
static inline CURLcode ckstore_curl_setopt_pointer(CURL *handle, CURLoption option, const void *value) {
    return curl_easy_setopt(handle, option, value);
}

/// curl_easy_setopt for callback options (CURLOPTTYPE_FUNCTIONPOINT) of the write/header shape.
static inline CURLcode ckstore_curl_setopt_callback(CURL *handle, CURLoption option, ckstore_curl_data_callback value) {
    return curl_easy_setopt(handle, option, value);
}

/// curl_easy_setopt for options taking a curl_off_t (CURLOPTTYPE_OFF_T).
static inline CURLcode ckstore_curl_setopt_off_t(CURL *handle, CURLoption option, curl_off_t value) {
    return curl_easy_setopt(handle, option, value);
}

/// curl_easy_getinfo for CURLINFO_LONG values.
static inline CURLcode ckstore_curl_getinfo_long(CURL *handle, CURLINFO info, long *value) {
    return curl_easy_getinfo(handle, info, value);
}

/// curl_easy_getinfo for CURLINFO_OFF_T values.
static inline CURLcode ckstore_curl_getinfo_off_t(CURL *handle, CURLINFO info, curl_off_t *value) {
    return curl_easy_getinfo(handle, info, value);
}

/// curl_easy_getinfo for CURLINFO_DOUBLE values.
static inline CURLcode ckstore_curl_getinfo_double(CURL *handle, CURLINFO info, double *value) {
    return curl_easy_getinfo(handle, info, value);
}

/// curl_easy_getinfo for CURLINFO_STRING values (the string is owned by the handle).
static inline CURLcode ckstore_curl_getinfo_string(CURL *handle, CURLINFO info, const char **value) {
    return curl_easy_getinfo(handle, info, value);
}

#endif
