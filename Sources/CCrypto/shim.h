#ifndef CKSTORE_CCRYPTO_SHIM_H
#define CKSTORE_CCRYPTO_SHIM_H
#include <openssl/sha.h>
#include <openssl/evp.h>
#endif
