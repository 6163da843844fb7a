/* Cloud-init at a VM's start (hx_ci_prepare, see hx_cloudinit.h): builds, uploads and attaches
 * the ISO when the files changed, or detaches and deletes it when they are all empty. */
#include "auto.h"
#include "cloudinit_priv.h"
#include "hx_log.h"
#include "hx_util.h"

#include <errno.h>
#include <libvirt/virterror.h>
#include <stdio.h>
#include <string.h>

/* ---- at start ---- */

int hx_ci_prepare(virConnectPtr conn, virDomainPtr dom, const char *vm, char **msg)
{
    /* SECURE: the definition goes back to libvirt, passwords (graphics) included. */
    hx_autofree char *xml =
        virDomainGetXMLDesc(dom, VIR_DOMAIN_XML_INACTIVE | VIR_DOMAIN_XML_SECURE);
    if (!xml)
        return hx_fail(msg, -EIO, "VM %s: cannot read its configuration: %s", vm,
                       virGetLastErrorMessage());
    hx_autoxml xmlDocPtr doc = hx_ci_parse(xml);
    if (!doc)
        return hx_fail(msg, -EIO, "VM %s: cannot parse its configuration", vm);
    hx_autofree char *vol = NULL;
    if (asprintf(&vol, "%s-cidata.iso", virDomainGetName(dom)) < 0)
        return hx_fail(msg, -ENOMEM, "VM %s: out of memory", vm);
    hx_ci_autoset hx_ci_set s = {0};
    if (hx_ci_from_xml(xml, &s) < 0)
        return hx_fail(msg, -ENOMEM, "VM %s: out of memory", vm);
    __attribute__((cleanup(hx_ci_state_clear))) hx_ci_state st;
    hx_ci_state_read(doc, vol, &st);
    int have = s.len[HX_CI_USER] || s.len[HX_CI_META] || s.len[HX_CI_NET];
    hx_autofree char *why = NULL;

    if (!have) {
        if (!st.recorded && !st.cdrom)
            return 0;
        /* Detach: the definition first, then the volume (a failure leaves it all attached). */
        hx_autofree char *nx = hx_ci_edit(doc, vol, NULL, 0, &why);
        hx_autodom virDomainPtr nd = nx ? virDomainDefineXML(conn, nx) : NULL;
        if (!nd)
            return hx_fail(msg, -EIO, "VM %s: cannot detach its cloud-init cdrom: %s", vm,
                           nx ? virGetLastErrorMessage() : why);
        hx_info("VM %s: cloud-init cdrom detached", vm);
        hx_autopool virStoragePoolPtr pool = virStoragePoolLookupByName(conn, HX_CI_POOL);
        if (st.vol_recorded)
            hx_ci_volume_delete(pool, vm, vol);
        return 0;
    }

    /* meta-data is required by NoCloud: a minimal one when none is set. */
    if (s.len[HX_CI_META] == 0) {
        char uuid[VIR_UUID_STRING_BUFLEN];
        free(s.data[HX_CI_META]);
        s.data[HX_CI_META] = NULL;
        if (virDomainGetUUIDString(dom, uuid) < 0 ||
            asprintf(&s.data[HX_CI_META], "instance-id: %s\nlocal-hostname: %s\n", uuid,
                     virDomainGetName(dom)) < 0) {
            s.data[HX_CI_META] = NULL;
            return hx_fail(msg, -EIO, "VM %s: cannot make its meta-data", vm);
        }
        s.len[HX_CI_META] = strlen(s.data[HX_CI_META]);
    }
    char hash[65] = "";
    if (hx_ci_hash(&s, hash) < 0)
        return hx_fail(msg, -EIO, "VM %s: cannot hash its cloud-init data", vm);
    hx_autopool virStoragePoolPtr pool = virStoragePoolLookupByName(conn, HX_CI_POOL);
    if (!pool)
        return hx_fail(msg, -EIO, "VM %s: cloud-init needs the storage pool %s: %s", vm, HX_CI_POOL,
                       virGetLastErrorMessage());
    /* A pool can miss a file someone removed behind libvirt's back: look again. */
    virStoragePoolRefresh(pool, 0);
    hx_autovol virStorageVolPtr old = virStorageVolLookupByName(pool, vol);
    if (st.recorded && st.cdrom && st.vol_recorded && old && st.hash && !strcmp(st.hash, hash))
        return 0; /* built at an earlier start from the same data */
    if (old && !st.vol_recorded)
        return hx_fail(msg, -EEXIST,
                       "VM %s: volume %s/%s exists and was not made by Horcrux for this VM", vm,
                       HX_CI_POOL, vol);

    hx_ci_autotmp hx_ci_tmp tmp = {0};
    hx_autofree char *iso = NULL;
    size_t iso_len = 0;
    if (hx_ci_build(&s, &tmp, &iso, &iso_len, &why) < 0)
        return hx_fail(msg, -EIO, "VM %s: cannot build its cloud-init ISO: %s", vm,
                       why ? why : "unknown error");
    hx_autofree char *nx = hx_ci_edit(doc, vol, hash, 1, &why);
    if (!nx)
        return hx_fail(msg, -EIO, "VM %s: cannot attach its cloud-init ISO: %s", vm,
                       why ? why : "unknown error");
    /* The image is replaced whole: libvirt volumes cannot be renamed, and the size may change. */
    if (old && virStorageVolDelete(old, 0) < 0)
        return hx_fail(msg, -EIO, "VM %s: cannot replace volume %s/%s: %s", vm, HX_CI_POOL, vol,
                       virGetLastErrorMessage());
    if (hx_ci_upload(conn, pool, vol, iso, iso_len, &why) < 0)
        return hx_fail(msg, -EIO, "VM %s: %s", vm, why ? why : "cannot upload its ISO");
    hx_autodom virDomainPtr nd = virDomainDefineXML(conn, nx);
    if (!nd) {
        int r = hx_fail(msg, -EIO, "VM %s: cannot attach its cloud-init ISO: %s", vm,
                        virGetLastErrorMessage());
        hx_ci_volume_delete(pool, vm, vol);
        return r;
    }
    hx_info("VM %s: cloud-init ISO %s/%s built (%zu bytes) and attached", vm, HX_CI_POOL, vol,
            iso_len);
    return 0;
}
