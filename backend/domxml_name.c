/* VM name checks (hx_domxml_check_name). */
#include "hx_domxml.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* Length of the valid UTF-8 sequence at s, or 0 (overlong forms, surrogates and code points
   above U+10FFFF are invalid). */
static size_t utf8_len(const unsigned char *s)
{
    if (s[0] < 0x80)
        return 1;
    size_t n = s[0] >= 0xf0 && s[0] <= 0xf4 ? 4 : s[0] >= 0xe0 ? 3 : s[0] >= 0xc2 ? 2 : 0;
    if (!n || s[0] > 0xf4)
        return 0;
    for (size_t i = 1; i < n; i++)
        if ((s[i] & 0xc0) != 0x80)
            return 0;
    if ((s[0] == 0xe0 && s[1] < 0xa0) || (s[0] == 0xed && s[1] >= 0xa0) ||
        (s[0] == 0xf0 && s[1] < 0x90) || (s[0] == 0xf4 && s[1] >= 0x90))
        return 0;
    return n;
}

static int name_err(char **err, const char *msg)
{
    if (err)
        *err = strdup(msg);
    return -EINVAL;
}

int hx_domxml_check_name(const char *name, char **err)
{
    if (err)
        *err = NULL;
    if (!name || !*name)
        return name_err(err, "name: must not be empty");
    if (strlen(name) > HX_DOMXML_NAME_MAX)
        return name_err(err, "name: must be at most 200 bytes");
    if (name[0] == '.')
        return name_err(err, "name: must not start with '.'");
    for (const unsigned char *p = (const unsigned char *)name; *p;) {
        if (*p == '/')
            return name_err(err, "name: must not contain '/'");
        if (*p < 0x20 || *p == 0x7f)
            return name_err(err, "name: must not contain control characters");
        size_t n = utf8_len(p);
        if (!n)
            return name_err(err, "name: must be valid UTF-8");
        p += n;
    }
    return 0;
}
