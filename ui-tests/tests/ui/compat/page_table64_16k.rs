// Mistake: PageTable64's API cannot name a 16 KiB page, so npt's
// compatibility type refuses a 16 KiB-granule format at compile time.
use npt::aarch64::Stage2Ipa40G16;
use npt::compat::PageTable64;

fn make<H: npt::PagingHandler>() {
    let _ = PageTable64::<Stage2Ipa40G16, H>::try_new();
}

fn main() {
    make::<npt::doc_support::Frames>();
}
