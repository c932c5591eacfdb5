#ifndef CKSTORE_CLZ4_SHIM_H
#define CKSTORE_CLZ4_SHIM_H
#include <lz4.h>
#endif
