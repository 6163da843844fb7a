/* The fixtures the domain XML tests share (test_domxml_*.c, linked as hxtest.c is): a fake node
 * for hx_domxml_apply's reference checks, and conversions and edits that fail the running test
 * on error. */
#pragma once

#include "hxtest.h"

#include "hx_domxml.h"

/* Networks default, lan and provisioning ("broken" cannot be looked up), bridge br0, pools
 * default and fast, volumes default/app1-data (10 GiB) and default/store1-root.qcow2 (20 GiB);
 * looking up a volume "broken" fails. */
extern const hx_domxml_env hxt_node;

/* hx_domxml_to_config(xml) without sizes and autostart 0. */
json_t *hxt_to_config(const char *xml);
/* hxt_to_config(xml) with the keys of patch (in hxt_json's notation) replaced. */
json_t *hxt_patched(const char *xml, const char *patch);
/* Applies patch to data file `name` on hxt_node; returns the new XML. *vols gets the volumes to
 * create (an array) when vols is not NULL. */
char *hxt_apply_ok(const char *name, const char *patch, json_t **vols);
/* hxt_apply_ok, then hxt_to_config of the result. */
json_t *hxt_change(const char *name, const char *patch);
