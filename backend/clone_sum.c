/* The content digest clones verify their copies with (SHA-256, OpenSSL's EVP). */
#include "clone_priv.h"

#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void hx_clone_hex(const unsigned char *md, unsigned n, char *out)
{
    for (unsigned i = 0; i < n; i++)
        sprintf(out + 2 * i, "%02x", md[i]);
}

/* The content digest of a disk: SHA-256 over the SHA-256 of each 1 MiB block (the last one may
 * be shorter). Equal content gives equal digests whatever its holes, and a block of zeros (a
 * hole, or zeros sent as data) costs a comparison instead of a hash: a mostly empty 1 GiB disk
 * hashes in the time of its data. */
#define HX_SUM_BLOCK (1u << 20)

static const unsigned char hx_clone_zero_block[HX_SUM_BLOCK];

void hx_clone_sum_clear(hx_clone_sum *s)
{
    EVP_MD_CTX_free(s->outer);
    free(s->block);
}

int hx_clone_sum_init(hx_clone_sum *s)
{
    memset(s, 0, sizeof(*s));
    s->outer = EVP_MD_CTX_new();
    s->block = malloc(HX_SUM_BLOCK);
    unsigned zl = 0;
    return s->outer && s->block && EVP_DigestInit_ex(s->outer, EVP_sha256(), NULL) == 1 &&
                   EVP_Digest(hx_clone_zero_block, HX_SUM_BLOCK, s->zero, &zl, EVP_sha256(),
                              NULL) == 1
               ? 0
               : -1;
}

static void hx_clone_sum_block(hx_clone_sum *s)
{
    unsigned char d[32];
    unsigned dl = 0;
    if (s->fill == HX_SUM_BLOCK && memcmp(s->block, hx_clone_zero_block, HX_SUM_BLOCK) == 0)
        memcpy(d, s->zero, sizeof(d));
    else
        EVP_Digest(s->block, s->fill, d, &dl, EVP_sha256(), NULL);
    EVP_DigestUpdate(s->outer, d, sizeof(d));
    s->fill = 0;
}

void hx_clone_sum_update(hx_clone_sum *s, const void *data, size_t n)
{
    const unsigned char *p = data;
    while (n > 0) {
        size_t k = HX_SUM_BLOCK - s->fill < n ? HX_SUM_BLOCK - s->fill : n;
        memcpy(s->block + s->fill, p, k);
        s->fill += k;
        p += k;
        n -= k;
        if (s->fill == HX_SUM_BLOCK)
            hx_clone_sum_block(s);
    }
}

void hx_clone_sum_zeros(hx_clone_sum *s, unsigned long long n)
{
    while (n > 0 && s->fill > 0) {
        size_t k = HX_SUM_BLOCK - s->fill < n ? HX_SUM_BLOCK - s->fill : (size_t)n;
        hx_clone_sum_update(s, hx_clone_zero_block, k);
        n -= k;
    }
    for (; n >= HX_SUM_BLOCK; n -= HX_SUM_BLOCK)
        EVP_DigestUpdate(s->outer, s->zero, sizeof(s->zero));
    if (n > 0)
        hx_clone_sum_update(s, hx_clone_zero_block, (size_t)n);
}

void hx_clone_sum_final(hx_clone_sum *s, char hex[65])
{
    if (s->fill > 0)
        hx_clone_sum_block(s);
    unsigned char h[EVP_MAX_MD_SIZE];
    unsigned hl = 0;
    EVP_DigestFinal_ex(s->outer, h, &hl);
    hx_clone_hex(h, hl, hex);
}
