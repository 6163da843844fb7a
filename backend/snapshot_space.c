/* Free space before a snapshot: the estimate (hx_snap_space_needed, unit tested) and the checks
 * of the storage pools holding the VM's disks, for internal and for btrfs snapshots. Runs on
 * the caller's thread within a change (the VM's operation lock held); no lock of its own. */
#include "hx_log.h"
#include "snapshots_priv.h"

#include <errno.h>
#include <libvirt/virterror.h>
#include <string.h>

uint64_t hx_snap_space_needed(uint64_t mem_bytes, uint64_t disk_bytes, unsigned n_disks)
{
    /* qemu writes the whole guest RAM into the vmstate area of the first qcow2 disk (zero pages
     * take little, but the worst case counts) plus device state: 1/16 more is the margin. The
     * disks grow by copy-on-write right after the snapshot: 1/32 of their virtual size, at
     * least 1 MiB each, before anyone notices a full pool. */
    uint64_t need = mem_bytes ? mem_bytes + mem_bytes / 16 : 0;
    uint64_t grow = disk_bytes / 32;
    if (grow < (uint64_t)n_disks * HX_MIB)
        grow = (uint64_t)n_disks * HX_MIB;
    return need + grow;
}

virStoragePoolPtr hx_snap_disk_pool(virConnectPtr conn, xmlNodePtr disk, uint64_t *capacity)
{
    xmlNodePtr src = hx_snap_xml_child(disk, "source");
    if (!src)
        return NULL;
    hx_autoxmlstr xmlChar *file = xmlGetProp(src, BAD_CAST "file");
    hx_autoxmlstr xmlChar *pool = xmlGetProp(src, BAD_CAST "pool");
    hx_autoxmlstr xmlChar *volume = xmlGetProp(src, BAD_CAST "volume");
    hx_autovol virStorageVolPtr vol = NULL;
    if (file) {
        vol = virStorageVolLookupByPath(conn, (const char *)file);
    } else if (pool && volume) {
        hx_autopool virStoragePoolPtr p = virStoragePoolLookupByName(conn, (const char *)pool);
        vol = p ? virStorageVolLookupByName(p, (const char *)volume) : NULL;
    }
    virStorageVolInfo vi;
    if (!vol || virStorageVolGetInfo(vol, &vi) < 0)
        return NULL;
    *capacity = vi.capacity;
    return virStoragePoolLookupByVolume(vol);
}

/* Storage pool name in *p and its free bytes; -1 when they cannot be read (the caller frees *p
 * after reading libvirt's error, which freeing it would reset). */
static int hx_snap_pool_free(virConnectPtr conn, const char *name, virStoragePoolPtr *p,
                             uint64_t *avail)
{
    virStoragePoolInfo pi;
    *p = virStoragePoolLookupByName(conn, name);
    /* The pool's numbers are as fresh as its last refresh: ask for a new one first. */
    if (*p)
        virStoragePoolRefresh(*p, 0);
    if (!*p || virStoragePoolGetInfo(*p, &pi) < 0)
        return -1;
    *avail = pi.available;
    return 0;
}

typedef struct hx_pool_need {
    char name[256];
    uint64_t mem, disk;
    unsigned n;
} hx_pool_need;

int hx_snap_space_check(hx_snapctx *c, const char *vm, const char *snap, int with_memory,
                        char **msg)
{
    hx_autofree char *xml = virDomainGetXMLDesc(c->dom, 0);
    hx_autoxml xmlDocPtr doc = hx_snap_xml_read(xml, "domain.xml");
    if (!doc)
        return hx_fail(msg, hx_snap_virt_errno(), "VM %s: cannot read its XML: %s", vm,
                       virGetLastErrorMessage());
    uint64_t mem = 0;
    virDomainInfo info;
    if (with_memory && virDomainGetInfo(c->dom, &info) == 0)
        mem = (uint64_t)info.maxMem * 1024;
    hx_autoxpctx xmlXPathContextPtr ctx = xmlXPathNewContext(doc);
    hx_autoxpobj xmlXPathObjectPtr o =
        ctx ? xmlXPathEvalExpression(BAD_CAST
                                     "/domain/devices/disk[not(@device) or "
                                     "@device='disk'][driver/@type='qcow2'][not(readonly)]",
                                     ctx)
            : NULL;
    hx_pool_need needs[16];
    size_t n_needs = 0;
    for (int i = 0; o && o->nodesetval && i < o->nodesetval->nodeNr; i++) {
        uint64_t cap = 0;
        hx_autopool virStoragePoolPtr p =
            hx_snap_disk_pool(c->conn, o->nodesetval->nodeTab[i], &cap);
        const char *pname = p ? virStoragePoolGetName(p) : NULL;
        if (!pname)
            continue;
        size_t k = 0;
        while (k < n_needs && strcmp(needs[k].name, pname) != 0)
            k++;
        if (k == n_needs) {
            if (n_needs == sizeof(needs) / sizeof(needs[0]))
                continue;
            memset(&needs[k], 0, sizeof(needs[k]));
            hx_strlcpy(needs[k].name, pname, sizeof(needs[k].name));
            n_needs++;
        }
        /* qemu's savevm puts the memory on the first disk that takes internal snapshots. */
        if (i == 0)
            needs[k].mem = mem;
        needs[k].disk += cap;
        needs[k].n++;
    }
    for (size_t k = 0; k < n_needs; k++) {
        hx_autopool virStoragePoolPtr p = NULL;
        uint64_t avail = 0;
        if (hx_snap_pool_free(c->conn, needs[k].name, &p, &avail) < 0) {
            hx_warn("VM %s: cannot check the free space of pool %s: %s", vm, needs[k].name,
                    virGetLastErrorMessage());
            continue;
        }
        uint64_t need = hx_snap_space_needed(needs[k].mem, needs[k].disk, needs[k].n);
        if (avail < need)
            return hx_fail(
                msg, -ENOSPC,
                "VM %s: snapshot %s needs about %llu MiB in storage pool %s "
                "(%s%llu MiB of disk growth) but the pool has %llu MiB free",
                vm, snap, (unsigned long long)((need + HX_MIB - 1) / HX_MIB), needs[k].name,
                needs[k].mem ? "the VM's memory and " : "",
                (unsigned long long)((need -
                                      (needs[k].mem ? needs[k].mem + needs[k].mem / 16 : 0)) /
                                     HX_MIB),
                (unsigned long long)(avail / HX_MIB));
    }
    return 0;
}

int hx_snap_bt_space_check(hx_snapctx *c, const char *vm, const char *snap, json_t *disks,
                           char **msg)
{
    /* Free space: a reflink copy shares every extent with its disk, so it costs metadata
     * only; what costs is the copy-on-write that follows, when the disk is written and the
     * snapshot keeps the old extents. Counted like for internal snapshots without memory. */
    size_t i;
    json_t *d;
    hx_autojson json_t *per_pool = json_object(); /* pool -> [bytes, n] */
    json_array_foreach (disks, i, d) {
        const char *pool = json_string_value(json_object_get(d, "pool"));
        json_t *e = json_object_get(per_pool, pool);
        if (!e)
            json_object_set_new(per_pool, pool,
                                e = json_pack("[I,I]", (json_int_t)0, (json_int_t)0));
        json_array_set_new(e, 0,
                           json_integer(json_integer_value(json_array_get(e, 0)) +
                                        json_integer_value(json_object_get(d, "capacity"))));
        json_array_set_new(e, 1, json_integer(json_integer_value(json_array_get(e, 1)) + 1));
    }
    const char *pname;
    json_t *e;
    json_object_foreach (per_pool, pname, e) {
        hx_autopool virStoragePoolPtr p = NULL;
        uint64_t avail = 0;
        if (hx_snap_pool_free(c->conn, pname, &p, &avail) < 0)
            return hx_fail(msg, hx_snap_virt_errno(), "VM %s: snapshot %s: storage pool %s: %s", vm,
                           snap, pname, virGetLastErrorMessage());
        uint64_t need = hx_snap_space_needed(0, (uint64_t)json_integer_value(json_array_get(e, 0)),
                                             (unsigned)json_integer_value(json_array_get(e, 1)));
        if (avail < need)
            return hx_fail(msg, -ENOSPC,
                           "VM %s: snapshot %s needs about %llu MiB in storage pool %s for the "
                           "disks' growth but the pool has %llu MiB free",
                           vm, snap, (unsigned long long)((need + HX_MIB - 1) / HX_MIB), pname,
                           (unsigned long long)(avail / HX_MIB));
    }
    return 0;
}
