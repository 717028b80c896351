// A pass-through cls_bpf classifier. bench/race puts it at veer's cls_bpf handle/priority before veerd
// starts in mode `tc`, so that veerd adopts (replaces in place) a cls_bpf filter instead of creating a tcx
// link: the only way to race veer's cls_bpf path on a kernel that has tcx (see race.py preseed_cls_bpf).
#include <linux/bpf.h>
#include <linux/pkt_cls.h>

__attribute__((section("tc"), used)) int tc_pass(struct __sk_buff *skb) { return TC_ACT_OK; }

char _license[] __attribute__((section("license"), used)) = "GPL";
