#!/usr/bin/env bash
# Refreshes the copied headers from the build machine's packages:
# bpf_helpers.h, bpf_helper_defs.h and bpf_endian.h from libbpf-dev
# (LGPL-2.1 OR BSD-2-Clause), and peerd_uapi.h, verbatim excerpts of
# include/uapi/linux/bpf.h from linux-libc-dev (GPL-2.0 WITH
# Linux-syscall-note). Run from anywhere; review the diff.
set -euo pipefail
cd "$(dirname "$0")"
cp /usr/include/bpf/bpf_helpers.h /usr/include/bpf/bpf_helper_defs.h /usr/include/bpf/bpf_endian.h .
U=/usr/include/linux/bpf.h
blk() { awk -v pat="$1" 'index($0,pat)==1{p=1} p{print} p&&/^};/{exit}' "$U"; echo; }
{
	sed -n '1,/^typedef __u32 __wsum;/p' peerd_uapi.h
	echo
	blk 'enum bpf_map_type {'
	blk '/* flags for BPF_MAP_UPDATE_ELEM command */'
	echo '/* Flags for bpf_redirect and bpf_msg_redirect_hash (an anonymous enum upstream). */'
	echo '#define BPF_F_INGRESS (1ULL << 0)'
	echo
	awk '/^#define __bpf_md_ptr/{p=1} p{print} p&&!/\\$/{exit}' "$U"
	echo
	blk 'struct __sk_buff {'
	blk 'struct bpf_sock {'
	blk 'struct sk_msg_md {'
	blk 'struct bpf_sock_addr {'
	blk 'struct bpf_sock_ops {'
	awk 'index($0,"/* List of known BPF sock_ops operators.")==1{p=1} p{print} p&&/^};/{exit}' "$U"
	echo
	echo '#endif /* __PEERD_UAPI_H__ */'
} >peerd_uapi.h.new
mv peerd_uapi.h.new peerd_uapi.h
