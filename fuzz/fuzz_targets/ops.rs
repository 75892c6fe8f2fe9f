//! Operation sequences chosen by the fuzzer (first byte: the format; then
//! two bytes a choice), each checked against the model after every step:
//! translations, refusals that change nothing, frames exactly what the
//! leaves need. Any disagreement panics, which libFuzzer reports.
#![no_main]

use libfuzzer_sys::fuzz_target;
use npt::{aarch64::Stage2Ipa39, riscv::Sv39x4, x86_64::Ept4};
use npt_tests::model::{
    run_ops, Bytes, BOTH_MEMTYPES_ILLEGAL, EPT_LEGAL, STAGE2_LEGAL, SV39X4_LEGAL,
};

fuzz_target!(|data: &[u8]| {
    let Some((which, rest)) = data.split_first() else {
        return;
    };
    let mut src = Bytes(rest);
    let illegal = BOTH_MEMTYPES_ILLEGAL;
    match which % 3 {
        0 => drop(run_ops::<Ept4>(&mut src, 64, &EPT_LEGAL, illegal)),
        1 => drop(run_ops::<Stage2Ipa39>(&mut src, 64, &STAGE2_LEGAL, illegal)),
        _ => drop(run_ops::<Sv39x4>(&mut src, 64, &SV39X4_LEGAL, illegal)),
    }
});
