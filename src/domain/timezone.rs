//! The time zone of a phone number (spec section 5.5, `list.download`):
//! for North American numbers, the IANA zone of the area code; empty for
//! every other number.
//!
//! An area code names a region, not a zone: a few straddle a zone line
//! (western Kentucky, the Dakotas, Idaho). Each is given the zone where most
//! of its numbers are. Numbers keep their area code when people move, so the
//! answer is a good guess at best — which is all a blast scheduler needs.

use super::phone::PhoneNumber;

/// The IANA zone of a North American number's area code; `""` when the
/// number is not North American or the area code is not in the table.
pub fn time_zone_of(number: &PhoneNumber) -> &'static str {
    if !number.is_north_american() {
        return "";
    }
    match number.digits()[1..4].parse::<u16>() {
        Ok(area) => zone_of_area_code(area),
        Err(_) => "",
    }
}

/// The table itself: one arm per zone, area codes in ascending order.
fn zone_of_area_code(area: u16) -> &'static str {
    match area {
        // United States, Eastern.
        201 | 202 | 203 | 207 | 212 | 215 | 216 | 220 | 223 | 227 | 229 | 231 | 234 | 239 | 240
        | 248 | 252 | 260 | 267 | 269 | 272 | 276 | 283 | 301 | 302 | 304 | 305 | 313 | 315
        | 317 | 321 | 324 | 326 | 329 | 330 | 332 | 336 | 339 | 347 | 351 | 352 | 363 | 380
        | 386 | 401 | 404 | 407 | 410 | 412 | 413 | 419 | 423 | 434 | 440 | 443 | 445 | 448
        | 463 | 470 | 472 | 475 | 478 | 484 | 502 | 508 | 513 | 516 | 517 | 518 | 540 | 551
        | 561 | 567 | 570 | 571 | 574 | 582 | 585 | 586 | 603 | 606 | 607 | 609 | 610 | 614
        | 616 | 617 | 624 | 631 | 640 | 645 | 646 | 656 | 667 | 678 | 679 | 680 | 681 | 686
        | 689 | 703 | 704 | 706 | 716 | 717 | 718 | 724 | 727 | 728 | 729 | 732 | 734 | 740
        | 743 | 754 | 757 | 762 | 765 | 770 | 772 | 774 | 781 | 786 | 802 | 803 | 804 | 810
        | 812 | 813 | 814 | 826 | 828 | 835 | 838 | 839 | 843 | 845 | 848 | 850 | 854 | 856
        | 857 | 859 | 860 | 862 | 863 | 864 | 865 | 878 | 904 | 906 | 908 | 910 | 912 | 914
        | 917 | 919 | 929 | 930 | 934 | 937 | 941 | 943 | 947 | 948 | 954 | 959 | 973 | 978
        | 980 | 984 | 989 => "America/New_York",
        // United States, Central.
        205 | 210 | 214 | 217 | 218 | 219 | 224 | 225 | 228 | 235 | 251 | 254 | 256 | 262 | 270
        | 281 | 308 | 309 | 312 | 314 | 316 | 318 | 319 | 320 | 325 | 327 | 331 | 334 | 337
        | 346 | 361 | 364 | 402 | 405 | 409 | 414 | 417 | 430 | 432 | 447 | 464 | 469 | 479
        | 501 | 504 | 507 | 512 | 515 | 531 | 534 | 539 | 557 | 563 | 572 | 573 | 580 | 601
        | 605 | 608 | 612 | 615 | 618 | 620 | 629 | 630 | 636 | 641 | 651 | 659 | 660 | 662
        | 682 | 701 | 708 | 712 | 713 | 715 | 726 | 731 | 737 | 763 | 769 | 773 | 779 | 785
        | 806 | 815 | 816 | 817 | 830 | 832 | 847 | 861 | 870 | 872 | 901 | 903 | 913 | 918
        | 920 | 931 | 936 | 938 | 940 | 945 | 952 | 956 | 972 | 979 | 985 => "America/Chicago",
        // United States, Mountain; Arizona keeps no daylight saving time.
        303 | 307 | 385 | 406 | 435 | 505 | 575 | 719 | 720 | 748 | 801 | 915 | 970 | 983 => {
            "America/Denver"
        }
        208 | 986 => "America/Boise",
        480 | 520 | 602 | 623 | 928 => "America/Phoenix",
        // United States, Pacific.
        206 | 209 | 213 | 253 | 279 | 310 | 323 | 341 | 350 | 357 | 360 | 369 | 408 | 415 | 424
        | 425 | 442 | 458 | 503 | 509 | 510 | 530 | 541 | 559 | 562 | 564 | 619 | 626 | 650
        | 657 | 661 | 669 | 702 | 707 | 714 | 725 | 738 | 747 | 760 | 775 | 805 | 818 | 820
        | 831 | 840 | 858 | 909 | 916 | 925 | 949 | 951 | 971 => "America/Los_Angeles",
        907 => "America/Anchorage",
        808 => "Pacific/Honolulu",
        // Canada.
        226 | 249 | 263 | 289 | 343 | 354 | 365 | 367 | 382 | 416 | 418 | 437 | 438 | 450 | 468
        | 514 | 519 | 548 | 579 | 581 | 613 | 647 | 683 | 705 | 742 | 753 | 807 | 819 | 873
        | 905 | 942 => "America/Toronto",
        204 | 431 | 584 => "America/Winnipeg",
        306 | 474 | 639 => "America/Regina",
        368 | 403 | 587 | 780 | 825 => "America/Edmonton",
        236 | 250 | 257 | 604 | 672 | 778 => "America/Vancouver",
        782 | 902 => "America/Halifax",
        428 | 506 => "America/Moncton",
        709 | 879 => "America/St_Johns",
        867 => "America/Whitehorse",
        // The Caribbean, Bermuda and the Pacific territories.
        242 => "America/Nassau",
        246 => "America/Barbados",
        264 => "America/Anguilla",
        268 => "America/Antigua",
        284 => "America/Tortola",
        340 => "America/St_Thomas",
        345 => "America/Cayman",
        441 => "Atlantic/Bermuda",
        473 => "America/Grenada",
        649 => "America/Grand_Turk",
        658 | 876 => "America/Jamaica",
        664 => "America/Montserrat",
        670 => "Pacific/Saipan",
        671 => "Pacific/Guam",
        684 => "Pacific/Pago_Pago",
        721 => "America/Lower_Princes",
        758 => "America/St_Lucia",
        767 => "America/Dominica",
        784 => "America/St_Vincent",
        787 | 939 => "America/Puerto_Rico",
        809 | 829 | 849 => "America/Santo_Domingo",
        868 => "America/Port_of_Spain",
        869 => "America/St_Kitts",
        _ => "",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rlibphonenumber::enums::Region;

    fn zone(input: &str) -> &'static str {
        time_zone_of(&PhoneNumber::parse(input, Region::US).expect("a number"))
    }

    #[test]
    fn us_area_codes_map_to_their_zone() {
        assert_eq!(zone("3108675309"), "America/Los_Angeles");
        assert_eq!(zone("+1 212 555 0100"), "America/New_York");
        assert_eq!(zone("312-555-0100"), "America/Chicago");
        assert_eq!(zone("303 555 0100"), "America/Denver");
        assert_eq!(zone("6025550100"), "America/Phoenix");
        assert_eq!(zone("9075550100"), "America/Anchorage");
        assert_eq!(zone("8085550100"), "Pacific/Honolulu");
    }

    #[test]
    fn canada_and_the_caribbean_are_covered() {
        assert_eq!(zone("4165550100"), "America/Toronto");
        assert_eq!(zone("6045550100"), "America/Vancouver");
        assert_eq!(zone("3065550100"), "America/Regina");
        assert_eq!(zone("7095550100"), "America/St_Johns");
        assert_eq!(zone("7875550100"), "America/Puerto_Rico");
        assert_eq!(zone("8765550100"), "America/Jamaica");
        assert_eq!(zone("4415550100"), "Atlantic/Bermuda");
    }

    #[test]
    fn unknown_and_foreign_numbers_have_no_zone() {
        // 999 is not an assigned area code; toll-free codes name no place.
        assert_eq!(zone("9995550100"), "");
        assert_eq!(zone("8005550100"), "");
        assert_eq!(zone("+447911123456"), "");
    }

    #[test]
    fn every_zone_in_the_table_is_a_real_iana_zone() {
        for area in 200..1000 {
            let name = zone_of_area_code(area);
            if !name.is_empty() {
                assert!(
                    name.parse::<chrono_tz::Tz>().is_ok(),
                    "{area}: {name} is not an IANA zone"
                );
            }
        }
    }

    #[test]
    fn the_table_covers_the_area_codes_in_use() {
        let covered = (200..1000)
            .filter(|a| !zone_of_area_code(*a).is_empty())
            .count();
        assert!(covered > 400, "only {covered} area codes");
    }
}
