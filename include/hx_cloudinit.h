/* Cloud-init NoCloud data of a VM (docs/tree.md, `cloudinit/`).
 *
 * The three documents (user-data, meta-data, network-config) live in the domain's persistent XML
 * metadata, in the namespace HX_CI_NS, one element per file holding its bytes in base64, so they
 * survive daemon restarts and move with the VM. At each start hx_ci_prepare builds a NoCloud ISO
 * (volume label "cidata") from them, uploads it into the node's pool "default" as the volume
 * "<vm>-cidata.iso" and makes sure the domain has a cdrom showing it; when every file is empty
 * the cdrom and the volume go away at the next start.
 *
 * Owns: the HX_CI_NS and HX_CI_ISO_NS metadata elements of a domain, the cdrom and the volume
 * "<vm>-cidata.iso" it makes. Callers: the tree reads the files (hx_ci_read, hx_ci_is_file: pure
 * functions of an XML text, any thread); vmops stores them and prepares a start (hx_ci_store,
 * hx_ci_prepare) with a connection and the VM's operation lock held. The module takes no lock
 * of its own. Files: backend/cloudinit_docs.c (the documents), cloudinit_cdrom.c (the domain
 * XML edit), cloudinit_iso.c (the image), cloudinit_volume.c (its volume), cloudinit_prepare.c
 * (at start); shared declarations in backend/cloudinit_priv.h.
 */
#pragma once

#include <libvirt/libvirt.h>
#include <stddef.h>

#define HX_CI_NS "https://horcrux.dev/xmlns/cloudinit/1"
/* What was built and attached last: pool, volume, target and the hash of the files. */
#define HX_CI_ISO_NS "https://horcrux.dev/xmlns/cloudinit-iso/1"
/* One file at most this long: EFBIG beyond. */
#define HX_CI_MAX_BYTES (64 * 1024)
/* The pool the ISO volume is made in. */
#define HX_CI_POOL "default"
/* How long the ISO tool may run. */
#define HX_CI_TOOL_TIMEOUT_MS 20000

/* The file names, NULL-terminated, in listing order. */
extern const char *const hx_ci_files[];
/* Whether name is one of them. */
int hx_ci_is_file(const char *name);

/* The bytes of one file as a domain XML records them: 0 with *out malloc'd (NUL-terminated,
 * empty when the file is not set) and *len; -ENOMEM; -EINVAL for an unknown name. */
int hx_ci_read(const char *xml, const char *file, char **out, size_t *len);

/* Replaces one file in the domain's persistent metadata (an empty content clears it; when all
 * three are empty the metadata element goes). The caller holds the VM's operation lock.
 * -EFBIG, -EINVAL, -EIO with *msg naming the VM. */
int hx_ci_store(virDomainPtr dom, const char *vm, const char *file, const char *data, size_t len,
                char **msg);

/* Before a start: builds, uploads and attaches the ISO when the files changed since the last
 * build (or the volume or cdrom went missing); detaches and deletes it when they are all empty.
 * Nothing changes on a failure: -EIO (or -EEXIST when a volume of that name that Horcrux did not
 * make is in the way) with *msg naming the VM. */
int hx_ci_prepare(virConnectPtr conn, virDomainPtr dom, const char *vm, char **msg);
