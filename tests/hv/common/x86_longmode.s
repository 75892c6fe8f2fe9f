// Shared by the x86_64 test hypervisors (AMD SVM under QEMU, Intel VMX
// under Bochs): the host's GDT, TSS and page tables, the switch from
// 32-bit protected mode (paging off, flat 4 GiB segments loaded) to long
// mode at `_start`, and the host's exception stubs. AT&T syntax.

// The host's page tables: an identity map of 0..4 GiB with 2 MiB pages
// (one PML4, one PDPT, four page directories). Cleared with .bss.
.section .bss.host_pt, "aw", @nobits
.balign 4096
host_pml4:
    .skip 4096
host_pdpt:
    .skip 4096
host_pd:
    .skip 4 * 4096

.section .data.gdt, "aw"
.balign 16
.global gdt
gdt:
    .quad 0
    .quad 0x00af9a000000ffff    // 0x08: 64-bit code, DPL 0
    .quad 0x00cf92000000ffff    // 0x10: data, 4 GiB, DPL 0
    .quad 0x00cf9a000000ffff    // 0x18: 32-bit code, 4 GiB (a boot sector's way in)
    // 0x20: a 64-bit TSS (16 bytes), filled in by a hypervisor that loads
    // TR (VMX needs a non-zero host TR selector).
    .quad 0
    .quad 0
gdt_end:
gdt_ptr:
    .word gdt_end - gdt - 1
    .quad gdt

.section .text.boot, "ax"
.code32
.global _start
_start:
    cli
    cld
    movl    $__stack_top, %esp
    lgdt    gdt_ptr

    // Clear .bss.
    movl    $__bss_start, %edi
    movl    $__bss_end, %ecx
    subl    %edi, %ecx
    xorl    %eax, %eax
    rep stosb

    // PML4[0] -> PDPT; PDPT[0..4] -> the four page directories.
    movl    $host_pdpt + 3, %eax            // P | RW
    movl    %eax, host_pml4
    movl    $host_pd + 3, %eax
    xorl    %ecx, %ecx
1:  movl    %eax, host_pdpt(,%ecx,8)
    addl    $0x1000, %eax
    incl    %ecx
    cmpl    $4, %ecx
    jb      1b
    // 2048 PDEs: 2 MiB pages, P | RW | PS, identity.
    movl    $0x83, %eax
    xorl    %ecx, %ecx
2:  movl    %eax, host_pd(,%ecx,8)
    addl    $0x200000, %eax
    incl    %ecx
    cmpl    $2048, %ecx
    jb      2b

    // Long mode: CR4.PAE, CR3, EFER.LME, then CR0.PG (with WP and PE).
    // EFER.NXE and EFER.SVME are set later, once CPUID says they exist.
    movl    %cr4, %eax
    orl     $0x20, %eax
    movl    %eax, %cr4
    movl    $host_pml4, %eax
    movl    %eax, %cr3
    movl    $0xc0000080, %ecx
    rdmsr
    orl     $0x100, %eax
    wrmsr
    movl    %cr0, %eax
    orl     $0x80010001, %eax
    movl    %eax, %cr0
    ljmp    $0x08, $long_mode

.code64
long_mode:
    movw    $0x10, %ax
    movw    %ax, %ds
    movw    %ax, %es
    movw    %ax, %ss
    movw    %ax, %fs
    movw    %ax, %gs
    movq    $__stack_top, %rsp
    xorl    %ebp, %ebp
    call    hv_main
3:  cli
    hlt
    jmp     3b

// Exceptions taken by the host itself (always a bug): each stub pushes an
// error code (0 where the CPU pushes none) and the vector, then calls
// host_exception(vector, error, rip, cr2).
.section .text, "ax"
.macro exc_noerr n
exc_stub_\n:
    pushq   $0
    pushq   $\n
    jmp     exc_common
.endm
.macro exc_err n
exc_stub_\n:
    pushq   $\n
    jmp     exc_common
.endm

.irp n, 0,1,2,3,4,5,6,7,9,15,16,18,19,20,22,23,24,25,26,27,28,31
exc_noerr \n
.endr
.irp n, 8,10,11,12,13,14,17,21,29,30
exc_err \n
.endr

exc_common:
    movq    (%rsp), %rdi
    movq    8(%rsp), %rsi
    movq    16(%rsp), %rdx
    movq    %cr2, %rcx
    andq    $-16, %rsp
    call    host_exception
4:  cli
    hlt
    jmp     4b

.section .rodata.exc_stubs, "a"
.balign 8
.global exc_stubs
exc_stubs:
.irp n, 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31
    .quad exc_stub_\n
.endr

