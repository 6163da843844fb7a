/* Inode numbers from object identity.
 *
 * NFS servers build file handles from inode number + generation, so inode numbers must survive
 * a daemon restart and never name two objects. An identity names the object by what does not
 * change ("/nodes/n1/vms/<uuid>/state"); its SHA-256, cut to 63 bits, is the inode number.
 * A VM that is deleted and recreated with the same name has a new UUID and so new inodes.
 */
#include "hx_tree.h"

#include <openssl/evp.h>
#include <pthread.h>
#include <string.h>

/* SHA-256 fetched once, and one digest context per thread: EVP_Digest with EVP_sha256() looks
 * the algorithm up in the provider tables and allocates a context on every call, and every
 * entry of a listing computes an inode number. */
static EVP_MD *hx_sha256;
static pthread_key_t hx_sha256_ctx;
static pthread_once_t hx_sha256_once = PTHREAD_ONCE_INIT;

static void hx_sha256_ctx_free(void *c)
{
    EVP_MD_CTX_free(c);
}

static void hx_sha256_init(void)
{
    hx_sha256 = EVP_MD_fetch(NULL, "SHA256", NULL);
    if (hx_sha256 && pthread_key_create(&hx_sha256_ctx, hx_sha256_ctx_free) != 0) {
        EVP_MD_free(hx_sha256);
        hx_sha256 = NULL;
    }
}

static void hx_sha256_digest(const char *s, unsigned char *md)
{
    pthread_once(&hx_sha256_once, hx_sha256_init);
    EVP_MD_CTX *c = hx_sha256 ? pthread_getspecific(hx_sha256_ctx) : NULL;
    if (hx_sha256 && !c && (c = EVP_MD_CTX_new()) && pthread_setspecific(hx_sha256_ctx, c) != 0) {
        EVP_MD_CTX_free(c);
        c = NULL;
    }
    unsigned int len = 0;
    if (c && EVP_DigestInit_ex2(c, hx_sha256, NULL) == 1 &&
        EVP_DigestUpdate(c, s, strlen(s)) == 1 && EVP_DigestFinal_ex(c, md, &len) == 1)
        return;
    EVP_Digest(s, strlen(s), md, &len, EVP_sha256(), NULL);
}

/* Writes the kind's pattern with its wildcards filled in: the VM's UUID (identity) or name. */
static void hx_tree_expand(const hx_obj *o, int by_uuid, char *buf, size_t size)
{
    const char *p = hx_kinds[o->kind].pattern;
    size_t k = 0;
    while (*p && k + 1 < size) {
        const char *sub = NULL;
        size_t skip = 0;
        if (*p != '{') {
            /* a literal character: the common case */
        } else if (strncmp(p, "{node}", 6) == 0) {
            sub = o->node;
            skip = 6;
        } else if (strncmp(p, "{vm}", 4) == 0) {
            sub = by_uuid ? o->vm_uuid : o->vm;
            skip = 4;
        } else if (strncmp(p, "{pool}", 6) == 0 || strncmp(p, "{job}", 5) == 0) {
            sub = o->sub;
            skip = p[1] == 'p' ? 6 : 5;
        } else if (strncmp(p, "{vol}", 5) == 0 || strncmp(p, "{snap}", 6) == 0) {
            sub = o->item;
            skip = p[1] == 'v' ? 5 : 6;
        }
        if (sub) {
            size_t l = strlen(sub);
            if (k + l >= size)
                l = size - k - 1;
            memcpy(buf + k, sub, l);
            k += l;
            p += skip;
        } else {
            buf[k++] = *p++;
        }
    }
    buf[k] = '\0';
}

void hx_tree_identity(const hx_obj *o, char *buf, size_t size)
{
    /* The UUID, not the name: names can be reused. */
    hx_tree_expand(o, 1, buf, size);
}

uint64_t hx_tree_ino(const hx_obj *o)
{
    if (o->kind == HX_KIND_ROOT)
        return 1;
    char id[1024];
    hx_tree_identity(o, id, sizeof(id));
    unsigned char md[EVP_MAX_MD_SIZE];
    hx_sha256_digest(id, md);
    uint64_t ino = 0;
    for (int i = 0; i < 8; i++)
        ino = (ino << 8) | md[i];
    ino &= 0x7fffffffffffffffULL; /* stays positive as an off_t or a signed ino */
    if (ino <= 1)
        ino += 2; /* 0 is invalid and 1 is the root */
    return ino;
}

void hx_tree_path(const hx_obj *o, char *buf, size_t size)
{
    hx_tree_expand(o, 0, buf, size);
}
